# Sourced by scripts/test: the system tools the suite runs for real, from
# Debian/Ubuntu packages when missing (CI runs as root on a clean machine):
# redis-server (the RESP tests compare Flin with it), redis-cli and
# redis-benchmark (redis-tools), openssl (a certificate for the TLS test), etcd
# (etcd-server: the many-hosts tests start their own on free loopback ports;
# etcd-client gives etcdctl) and iproute2 (ip netns for the partition test).
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null && command -v redis-benchmark >/dev/null || need+=(redis-tools)
command -v openssl >/dev/null || need+=(openssl)
command -v etcd >/dev/null || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)
command -v ip >/dev/null || need+=(iproute2)
if [ "${#need[@]}" -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    echo "scripts: installing ${need[*]} (apt-get)" >&2
    $SUDO apt-get update -qq >&2
    # The redis-server and etcd-server packages would start system-wide servers on
    # 6379 and 2379 (the tests start their own on free ports): a policy-rc.d that says no keeps it stopped.
    guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        guard=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$guard" >/dev/null && $SUDO chmod +x "$guard"
    fi
    status=0
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2 || status=$?
    [ -n "$guard" ] && $SUDO rm -f "$guard"
    [ "$status" = 0 ] || { echo "scripts: apt-get install ${need[*]} failed ($status)" >&2; exit "$status"; }
fi
