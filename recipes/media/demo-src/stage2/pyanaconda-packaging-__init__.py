# __init__.py
# Entry point for anaconda's software management module.
#
# Copyright (C) 2012  Red Hat, Inc.
#
# This copyrighted material is made available to anyone wishing to use,
# modify, copy, or redistribute it subject to the terms and conditions of
# the GNU General Public License v.2, or (at your option) any later version.
#
# NOTE: this is a shortened stand-in written for the v6build demo media;
# it is not the upstream file.  Only the lines that
# recipes/patches/anaconda-treeinfo-retry.patch touches, and a few beside
# them, are as in Anaconda 21.48.22.56's pyanaconda/packaging/__init__.py,
# and they sit at their real line numbers, so that the same patch applies
# exactly (no offset, no fuzz) to this file and to the real one.  Every
# other line is filler written for the demo: blank lines, and comments
# saying which real lines are left out.
#











# (stand-in: real lines 9-35 omitted; the names the stand-in uses:)
import logging
from urlgrabber.grabber import URLGrabber, URLGrabError
from pyanaconda.iutil import ProxyString, ProxyStringError
log = logging.getLogger("packaging")

from glob import glob
import re
import threading

if __name__ == "__main__":
    from pyanaconda import anaconda_log
    anaconda_log.init()

# (stand-in: real lines 44-72 omitted)





























REPO_NOT_SET = False

###
### ERROR HANDLING
###
# (stand-in: real lines 79-118 omitted)







































class Payload(object):
    """ Stand-in for Anaconda's Payload base class. """
    # (stand-in: real lines 120-398 omitted)





















































































































































































































































































    def _getTreeInfo(self, url, proxy_url, sslverify):
        """ Stand-in: fetch url/.treeinfo (or url/treeinfo); its local path or None. """
        # (stand-in: real lines 400-425 omitted or rewritten)















        ugopts = dict(ssl_verify_peer=sslverify, ssl_verify_host=sslverify)


        proxies = {}
        if proxy_url:
            try:
                proxy = ProxyString(proxy_url)
                proxies = dict(http=proxy.url, https=proxy.url)

            except ProxyStringError as e:
                log.info("Failed to parse proxy for _getTreeInfo %s: %s",
                         proxy_url, e)

        ug = URLGrabber()
        try:
            treeinfo = ug.urlgrab("%s/.treeinfo" % url,
                                  "/tmp/.treeinfo", copy_local=True,
                                  proxies=proxies, **ugopts)
        except URLGrabError as e:
            try:
                treeinfo = ug.urlgrab("%s/treeinfo" % url,
                                      "/tmp/.treeinfo", copy_local=True,
                                      proxies=proxies, **ugopts)
            except URLGrabError as e:
                log.info("Error downloading treeinfo: %s", e)
                treeinfo = None

        return treeinfo

# (stand-in: real lines 446-1334 omitted)
