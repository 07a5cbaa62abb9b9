#!/bin/sh
# fix-ipv6-only.sh -- make the ifcfg files of an IPv6-only kickstart network
# readable by NetworkManager (gotcha 2 of the IPv6-only install write-up).
#
# Installed as /usr/libexec/fix-ipv6-only.sh (mode 0755) in the Anaconda
# stage2 and run once at boot by fix-ipv6.service, before NetworkManager.
#
# Why: for `network --bootproto=static --ipv6=ADDR/64 --noipv4` dracut's
# parse-kickstart writes, for example,
#     BOOTPROTO=static
#     IPADDR=
#     IPV6ADDR=2401:beef:20::99/64
# and NetworkManager cannot make a connection out of BOOTPROTO=static with
# no IPv4 address (Anaconda reports SettingsNotFoundError): the installer
# comes up without network.  Without the BOOTPROTO line the file is a valid
# IPv6-only connection.
#
# What: for EVERY ifcfg-* in the directory (interface names differ between
# net.ifnames=0 and predictable names, and a kickstart may configure several
# devices) whose IPADDR is empty (IPADDR=, IPADDR="" or IPADDR='', the last
# IPADDR line counting, as in shell) and whose BOOTPROTO is static or none,
# remove the BOOTPROTO lines.  A file with an IPv4 address, with no IPADDR
# line, or with BOOTPROTO=dhcp/bootp/ibft is left alone: without BOOTPROTO
# a DHCP device would lose DHCP.
#
# Idempotent (a fixed file has no BOOTPROTO left, so a second run changes
# nothing), atomic (the new text goes to a temporary file in the same
# directory, which then replaces the old one with mv; cp -p first gives the
# temporary file the old one's mode and owner where cp exists, umask 022
# otherwise), and it never fails the boot: problems are logged, exit
# status 0.  POSIX sh; besides the shell's builtins it runs only mv (and cp
# when present).
#
# The directory is /etc/sysconfig/network-scripts, or $FIX_IPV6_IFCFG_DIR
# when that is set (for tests).

dir=${FIX_IPV6_IFCFG_DIR:-/etc/sysconfig/network-scripts}

# Log with a syslog priority prefix that journald understands on stdout
# (SyslogLevelPrefix=yes is systemd's default): <6> info, <4> warning.
log_info() { echo "<6>$*"; }
log_warn() { echo "<4>$*"; }

# unquote VALUE: VALUE without one pair of surrounding "" or ''.
unquote() {
    case $1 in
        \"*\") _u=${1#\"}; _u=${_u%\"} ;;
        \'*\') _u=${1#\'}; _u=${_u%\'} ;;
        *) _u=$1 ;;
    esac
    printf '%s' "$_u"
}

# needs_fix FILE: succeeds when FILE's last IPADDR is empty and its last
# BOOTPROTO is static or none.
needs_fix() {
    _ip=unset
    _proto=
    while IFS= read -r _l || [ -n "$_l" ]; do
        case $_l in
            IPADDR=*) _ip=$(unquote "${_l#IPADDR=}") ;;
            BOOTPROTO=*) _proto=$(unquote "${_l#BOOTPROTO=}") ;;
        esac
    done < "$1"
    [ "$_ip" = "" ] || return 1
    case $_proto in
        static | none | STATIC | NONE) return 0 ;;
    esac
    return 1
}

# fix FILE: rewrite FILE without its BOOTPROTO lines.
fix() {
    _f=$1
    _tmp=$dir/.${_f##*/}.fix-ipv6.$$
    if ! { cp -p "$_f" "$_tmp" 2>/dev/null || (umask 022 && : > "$_tmp"); }; then
        log_warn "${_f##*/}: cannot create $_tmp, left as it is"
        return 0
    fi
    # ">" truncates the copy but keeps its mode and owner.
    _ok=yes
    {
        while IFS= read -r _l || [ -n "$_l" ]; do
            case $_l in
                BOOTPROTO=*) ;;
                *) printf '%s\n' "$_l" || _ok=no ;;
            esac
        done < "$_f" > "$_tmp"
    } 2>/dev/null || _ok=no
    if [ "$_ok" != yes ]; then
        log_warn "${_f##*/}: cannot write $_tmp, left as it is"
        rm -f "$_tmp" 2>/dev/null
        return 0
    fi
    if mv -f "$_tmp" "$_f"; then
        log_info "${_f##*/}: no IPv4 address, removed BOOTPROTO so NetworkManager can read it"
    else
        log_warn "${_f##*/}: could not replace it, left as it is"
        rm -f "$_tmp" 2>/dev/null
    fi
}

if [ ! -d "$dir" ]; then
    log_info "$dir does not exist, nothing to do"
    exit 0
fi

for f in "$dir"/ifcfg-*; do
    case $f in
        *~ | *.bak | *.orig | *.rpmnew | *.rpmsave) continue ;;
    esac
    # Only regular files: mv would replace a symlink, not its target.
    if [ -L "$f" ] || [ ! -f "$f" ]; then
        continue
    fi
    if [ ! -r "$f" ]; then
        log_warn "${f##*/}: cannot read it, left as it is"
        continue
    fi
    if needs_fix "$f"; then
        fix "$f"
    fi
done

exit 0
