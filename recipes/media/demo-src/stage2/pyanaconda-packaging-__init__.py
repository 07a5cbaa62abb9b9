# __init__.py
# Entry point for anaconda's software management module.
#
# Copyright (C) 2012  Red Hat, Inc.
#
# This copyrighted material is made available to anyone wishing to use,
# modify, copy, or redistribute it subject to the terms and conditions of
# the GNU General Public License v.2, or (at your option) any later version.
#
# NOTE: this is a shortened stand-in written for the v6build demo media.
# It keeps the shape of EL7 anaconda 21.48's pyanaconda/packaging module
# around Payload._getTreeInfo, which is what the treeinfo retry patch edits;
# it is not the upstream file.
#
"""
    TODO
        - error handling!!!
        - document all methods

"""
import os
import time
import requests
import ConfigParser

from pyanaconda.flags import flags
from pyanaconda.constants import DRACUT_ISODIR, DRACUT_REPODIR, INSTALL_TREE
from pyanaconda.constants import ISO_DIR, THREAD_PAYLOAD, productVersion
from pyanaconda.i18n import _
from pyanaconda.iutil import ProxyString, ProxyStringError
from pyanaconda import iutil

import logging
log = logging.getLogger("packaging")

from blivet.errors import StorageError

USER_AGENT = "anaconda (anaconda)/21.48.22"

class PayloadError(Exception):
    pass

class MetadataError(PayloadError):
    pass

class NoNetworkError(PayloadError):
    pass

class Payload(object):
    """ Payload is an abstract class for OS install delivery methods. """
    def __init__(self, data):
        """ data is a kickstart.AnacondaKSHandler class
        """
        self.data = data
        self.storage = None
        self.instclass = None
        self.txID = None

        # A list of verbose error strings from the subclass
        self.verbose_errors = []

        self._session = requests.Session()

    def setup(self, storage, instClass):
        """ Do any payload-specific setup. """
        self.storage = storage
        self.instclass = instClass
        self.verbose_errors = []

    def unsetup(self):
        """ Invalidate a previously setup paylaod. """
        self.storage = None
        self.instclass = None

    def preStorage(self):
        """ Do any payload-specific work necessary before writing the storage
            configuration.  This method need not be defined by all payloads.
        """
        pass

    def release(self):
        """ Release any resources in use by this object, but do not do final
            cleanup.  This is useful for dealing with payload backends that do
            not get along well with multithreaded programs.
        """
        pass

    def reset(self):
        """ Reset the instance, not including ksdata. """
        pass

    ###
    ### METHODS FOR WORKING WITH REPOSITORIES
    ###
    @property
    def addOns(self):
        """ A list of addon repo identifiers. """
        return [r.name for r in self.data.repo.dataList()]

    @property
    def baseRepo(self):
        """ Get the identifier of the current base repo or None. """
        return None

    def _getTreeInfo(self, url, proxy_url, sslverify):
        """ Retrieve treeinfo and return the path to the local file.

            :param baseurl: url of the repo
            :type baseurl: string
            :param proxy_url: Optional full proxy URL of or ""
            :type proxy_url: string
            :param sslverify: True if SSL certificate should be varified
            :type sslverify: bool
            :returns: Path to retrieved .treeinfo file or None
            :rtype: string or None
        """
        if not url:
            return None

        log.debug("retrieving treeinfo from %s (proxy: %s ; sslverify: %s)",
                  url, proxy_url, sslverify)

        proxies = {}
        if proxy_url:
            try:
                proxy = ProxyString(proxy_url)
                proxies = {"http": proxy.url,
                           "https": proxy.url}
            except ProxyStringError as e:
                log.info("Failed to parse proxy for _getTreeInfo %s: %s",
                         proxy_url, e)

        response = None
        headers = {"user-agent": USER_AGENT}
        try:
            response = self._session.get("%s/.treeinfo" % url, headers=headers,
                                         proxies=proxies, verify=sslverify)
        except requests.exceptions.RequestException as e:
            try:
                response = self._session.get("%s/treeinfo" % url,
                                             headers=headers, proxies=proxies,
                                             verify=sslverify)
            except requests.exceptions.RequestException as e:
                log.info("Error downloading treeinfo: %s", e)
                response = None

        if response:
            # write the local treeinfo file
            with open("/tmp/.treeinfo", "w") as f:
                f.write(response.text)

            # and also return the treeinfo contents as a string
            return "/tmp/.treeinfo"
        else:
            return None

    def _getReleaseVersion(self, url):
        """ Return the release version of the tree at the specified URL. """
        version = productVersion.split("-")[0]

        log.debug("getting release version from tree at %s (%s)", url, version)

        if hasattr(self.data.method, "proxy"):
            proxy = self.data.method.proxy
        else:
            proxy = None
        treeinfo = self._getTreeInfo(url, proxy, not flags.noverifyssl)
        if treeinfo:
            c = ConfigParser.ConfigParser()
            c.read(treeinfo)
            try:
                # Trim off any -Alpha or -Beta
                version = c.get("general", "version").split("-")[0]
            except ConfigParser.Error:
                pass

        if version.startswith(time.strftime("%Y")):
            version = "rawhide"

        log.debug("got a release version of %s", version)
        return version

    ###
    ### METHODS FOR INSTALLING THE PAYLOAD
    ###
    def preInstall(self, packages=None, groups=None):
        """ Perform pre-installation tasks. """
        iutil.mkdirChain(iutil.getSysroot() + "/root")

    def install(self):
        """ Install the payload. """
        raise NotImplementedError()

    def postInstall(self):
        """ Perform post-installation tasks. """
        pass
