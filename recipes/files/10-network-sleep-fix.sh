#!/bin/sh
# 10-network-sleep-fix.sh -- dracut initqueue/online hook for IPv6-only
# networks (gotcha 1 of the IPv6-only install write-up).
#
# Installed as /usr/lib/dracut/hooks/initqueue/online/10-network-sleep-fix.sh
# (mode 0755) in the EL7 PXE initrd.  Hooks run in C-locale name order, so
# it runs after Anaconda's 00-anaconda-ifcfg.sh and before its
# 11-fetch-kickstart-net.sh (inst.ks=), 20-fetch-driver-net.sh and
# 80-anaconda-netroot.sh (inst.stage2=), as Anaconda 21.48's
# dracut/module-setup.sh installs them.
#
# Why: on an IPv6-only network dracut declares an interface "online" as soon
# as it has been brought up, before the kernel has finished duplicate address
# detection and before a router advertisement has installed a default
# route.  The later online hooks then fetch the kickstart and stage2, get
# "Network is unreachable", and the boot drops to the emergency shell or
# retries until rd.retry runs out.
#
# The write-up's hook is a fixed "sleep 4".  This one waits only as long as
# needed, and at most a bounded time, for
#   1. a usable (not tentative, not dadfailed) global IPv6 address, and
#   2. a default IPv6 route on the interface (learned from an RA, or a
#      static gateway given with ip=).
# A fixed sleep is too long on a fast network and can be too short on a
# slow one: DAD alone takes about a second per address, and if the answer
# to the kernel's router solicitations is late or lost the next unsolicited
# RA may be minutes away (routers send them up to MaxRtrAdvInterval, 600 s
# by default, apart).  The wait checks the two things the fetches need.
#
# The wait limit in seconds can be changed on the kernel command line with
# rd.v6build.ratimeout=N (default 30).  If the interface already has a global
# IPv4 address the network is not IPv6-only and the hook returns at once.
#
# Contract with dracut 033: ifup runs `source_hook initqueue/online $netif`,
# and source_all SOURCES each hook (`. "$f" "$@"`) in a loop, so an exit here
# would end ifup itself and the hooks after this one would never run: the
# hook must not call exit, and every variable it sets leaks into the caller;
# hence the _v6_ prefix and the unset at the end.  The interface name is in
# $netif (bash's "." also passes it as $1; POSIX "." takes no arguments, so
# $netif comes first).  Only POSIX sh plus `ip`, `cat` and `sleep` are used,
# so bash, dash and busybox ash all work.  $V6BUILD_IPV6_CONF replaces
# /proc/sys/net/ipv6/conf, for tests only.

_v6_log() {
    # dracut-lib.sh provides info/warn (to the journal and the console) and
    # getarg; test for getarg, because "info" alone may be GNU info(1) when
    # the hook is run by hand outside dracut.  Then fall back to stderr.
    if command -v getarg >/dev/null 2>&1; then
        "$@"
    else
        shift
        echo "$*" >&2
    fi
}

# Succeeds when interface $1 has a usable global IPv6 address.  Tentative
# addresses are still in duplicate address detection and cannot be used as
# a source yet; dadfailed ones never will be.  Matching is done with `case`
# rather than grep, so the hook needs nothing beyond `ip` in the initramfs.
_v6_has_global_addr() {
    ip -6 -o addr show dev "$1" 2>/dev/null | {
        while read -r _v6_line; do
            case "$_v6_line" in
                *tentative*|*dadfailed*) ;;
                *" scope global"*) return 0 ;;
            esac
        done
        return 1
    }
}

# Succeeds when there is an IPv6 default route through interface $1.  An
# RA-learned route reads "default via fe80::1 dev eth0 proto ra ..." (older
# kernels and iproute print "proto kernel ... expires"); either form, or a
# static gateway given with ip=, will do.
_v6_has_default_route() {
    ip -6 route show default dev "$1" 2>/dev/null | {
        while read -r _v6_line; do
            case "$_v6_line" in
                default*) return 0 ;;
            esac
        done
        return 1
    }
}

# Succeeds when interface $1 has a global IPv4 address (dual stack).
_v6_has_global_ipv4() {
    ip -4 -o addr show dev "$1" 2>/dev/null | {
        while read -r _v6_line; do
            case "$_v6_line" in
                *" scope global"*) return 0 ;;
            esac
        done
        return 1
    }
}

_v6_wait_for_ra() {
    _v6_if=$1

    if [ -z "$_v6_if" ] || [ "$_v6_if" = lo ]; then
        return 0
    fi
    _v6_conf=${V6BUILD_IPV6_CONF:-/proc/sys/net/ipv6/conf}
    if [ ! -d "$_v6_conf/$_v6_if" ]; then
        _v6_log info "10-network-sleep-fix: no IPv6 on $_v6_if, not waiting"
        return 0
    fi
    if _v6_has_global_ipv4 "$_v6_if"; then
        # Dual stack: IPv4 is usable now, nothing to wait for.
        return 0
    fi

    _v6_timeout=30
    if command -v getarg >/dev/null 2>&1; then
        _v6_arg=$(getarg rd.v6build.ratimeout=)
        case "$_v6_arg" in
            ''|*[!0-9]*) ;;  # unset or not a number: keep the default
            *) _v6_timeout=$_v6_arg ;;
        esac
    fi

    # The kernel only learns routes from RAs when accept_ra is on; make sure
    # a sysctl.conf or an earlier hook did not turn it off for this link.
    # 2 = accept RAs even if forwarding is enabled.
    for _v6_key in accept_ra accept_ra_defrtr accept_ra_pinfo; do
        _v6_file=$_v6_conf/$_v6_if/$_v6_key
        if [ -w "$_v6_file" ] && [ "$(cat "$_v6_file")" = 0 ]; then
            if [ "$_v6_key" = accept_ra ] &&
                [ "$(cat "$_v6_conf/$_v6_if/forwarding" 2>/dev/null)" = 1 ]; then
                echo 2 > "$_v6_file"
            else
                echo 1 > "$_v6_file"
            fi
        fi
    done

    _v6_waited=0
    while [ "$_v6_waited" -lt "$_v6_timeout" ]; do
        if _v6_has_global_addr "$_v6_if" && _v6_has_default_route "$_v6_if"; then
            _v6_log info "10-network-sleep-fix: $_v6_if has a global IPv6 address and a default route after ${_v6_waited}s"
            return 0
        fi
        sleep 1
        _v6_waited=$((_v6_waited + 1))
    done

    # Not fatal: continue and let the fetch hooks report the real error
    # (a network may legitimately have no router, e.g. a flat lab link).
    _v6_log warn "10-network-sleep-fix: $_v6_if: no global IPv6 address and default route after ${_v6_timeout}s, continuing anyway"
    return 0
}

_v6_wait_for_ra "${netif:-$1}"

unset -f _v6_log _v6_has_global_addr _v6_has_default_route _v6_has_global_ipv4 \
    _v6_wait_for_ra
unset _v6_if _v6_conf _v6_timeout _v6_arg _v6_key _v6_file _v6_waited _v6_line
