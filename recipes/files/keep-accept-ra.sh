#!/bin/sh
# keep-accept-ra.sh -- an EXTRA, optional fix beyond the write-up: set
# accept_ra / accept_ra_defrtr back to 1 once, early in the Anaconda stage2,
# on IPv6-only networks.
#
# Installed as /usr/libexec/keep-accept-ra.sh (mode 0755) by the layer
# "keep-accept-ra" and run once at boot by keep-accept-ra.service.
#
# Why: on EL7 the installer's NetworkManager may write accept_ra=0 (it wants
# to run its own RA handling) or leave the kernel with accept_ra_defrtr=0
# when it takes the interfaces over, and the kernel then drops the default
# route it had learned from router advertisements.  On a dual-stack network
# IPv4 hides this; on an IPv6-only network Anaconda loses its only route and
# repository fetches fail with "network unreachable" (gotcha 4).
#
# The race this cannot close: NetworkManager resets the values whenever it
# (re)activates a connection, and Anaconda re-applies the kickstart network
# settings after %pre, long after this one-shot has run.  A reset after that
# is not undone here.  The fix that covers the whole install is the kickstart
# %pre loop in ks-pre-accept-ra.sh (the write-up's fix for gotcha 4); this
# unit only helps the first minutes, for example of an install without a
# kickstart.
#
# What: for every IPv6 interface (plus "all" and "default", so interfaces
# that appear later inherit the values) set
#   accept_ra        = 1, or 2 when the interface forwards (with forwarding
#                      on, the kernel ignores RAs unless accept_ra is 2)
#   accept_ra_defrtr = 1 (take the default router from RAs)
# The script is idempotent: it writes only values that differ, logs each
# change (stdout goes to the journal under keep-accept-ra), and running it
# again is a no-op.  It never fails the boot: a value it cannot write is
# logged as a warning and the exit status stays 0.

set -u

conf=/proc/sys/net/ipv6/conf

# Log with a syslog priority prefix that journald understands on stdout
# (SyslogLevelPrefix=yes is systemd's default): <6> info, <4> warning.
log_info() { echo "<6>$*"; }
log_warn() { echo "<4>$*"; }

# set_key IFACE KEY VALUE: write VALUE to conf/IFACE/KEY unless it is
# already there.
set_key() {
    file=$conf/$1/$2
    [ -e "$file" ] || return 0
    current=$(cat "$file" 2>/dev/null) || current=
    if [ "$current" = "$3" ]; then
        return 0
    fi
    if echo "$3" > "$file" 2>/dev/null; then
        log_info "$1: $2 $current -> $3"
    else
        log_warn "$1: could not set $2 to $3 (still $current)"
    fi
}

if [ ! -d "$conf" ]; then
    log_info "IPv6 is disabled in this kernel, nothing to do"
    exit 0
fi

for dir in "$conf"/*; do
    [ -d "$dir" ] || continue
    iface=${dir##*/}
    # The loopback never receives router advertisements.
    [ "$iface" = lo ] && continue

    # Leave interfaces where IPv6 is switched off explicitly alone.
    if [ "$(cat "$dir/disable_ipv6" 2>/dev/null)" = 1 ]; then
        continue
    fi

    if [ "$(cat "$dir/forwarding" 2>/dev/null)" = 1 ]; then
        want_ra=2
    else
        want_ra=1
    fi
    set_key "$iface" accept_ra "$want_ra"
    set_key "$iface" accept_ra_defrtr 1
done

exit 0
