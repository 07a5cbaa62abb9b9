# ks-pre-accept-ra.sh -- kickstart %pre snippet: keep IPv6 router
# advertisements accepted for the whole installation.
#
# Paste this file's contents into the kickstart between
#
#   %pre --interpreter=/bin/sh --log=/tmp/ks-pre.log
#   ... contents of this file ...
#   %end
#
# Why: on an IPv6-only network the installer's only default route is the one
# the kernel learns from router advertisements.  NetworkManager may reset
# accept_ra / accept_ra_defrtr to 0 whenever it (re)activates a connection,
# including after %pre, when Anaconda applies the kickstart "network"
# commands; the kernel then drops that route and package downloads fail
# half-way through the install.  fix-ipv6.service corrects the values once
# at boot; this snippet keeps them corrected until Anaconda exits.
#
# It starts a small watcher in the background with stdin and output detached
# from %pre's pipes, so %pre returns immediately and Anaconda does not wait
# for it.  The watcher stops when Anaconda's pid file (/var/run/anaconda.pid)
# goes away, if it existed when %pre ran, and after at most 12 hours in any
# case.  Uses only POSIX sh, cat and sleep.

accept_ra_fix() {
    for dir in /proc/sys/net/ipv6/conf/*; do
        [ -d "$dir" ] || continue
        case "${dir##*/}" in lo) continue ;; esac
        [ "$(cat "$dir/disable_ipv6" 2>/dev/null)" = 1 ] && continue
        # With forwarding on, the kernel ignores RAs unless accept_ra is 2.
        want=1
        [ "$(cat "$dir/forwarding" 2>/dev/null)" = 1 ] && want=2
        [ "$(cat "$dir/accept_ra" 2>/dev/null)" = "$want" ] ||
            { echo "$want" > "$dir/accept_ra"; echo "${dir##*/}: accept_ra=$want"; }
        [ "$(cat "$dir/accept_ra_defrtr" 2>/dev/null)" = 1 ] ||
            { echo 1 > "$dir/accept_ra_defrtr"; echo "${dir##*/}: accept_ra_defrtr=1"; }
    done
}

# Once now, so the rest of %pre already has a route.
accept_ra_fix

# Then every 5 s while Anaconda runs (8640 * 5 s = 12 h at most).
(
    watch_pid=no
    [ -e /var/run/anaconda.pid ] && watch_pid=yes
    n=0
    while [ "$n" -lt 8640 ]; do
        if [ "$watch_pid" = yes ] && [ ! -e /var/run/anaconda.pid ]; then
            break
        fi
        accept_ra_fix
        sleep 5
        n=$((n + 1))
    done
) </dev/null >>/tmp/ks-pre-accept-ra.log 2>&1 &
