#!/usr/bin/env bash
# The QEMU lab: PXE-boots one or more VMs against Dragonfly and reports how far each got.
#
#   scripts/lab.sh                        one BIOS VM against a fresh local server
#   scripts/lab.sh --count 3 --firmware uefi
#   scripts/lab.sh --server http://127.0.0.1:3000 --token dfo_...   use a running server
#   sudo scripts/lab.sh --network bridge --firmware uefi-http   Dragonfly's own proxyDHCP
#
# --network user (the default): QEMU's user network and its built-in DHCP, which names the
# server's boot.ipxe. --network bridge (root): a private network in namespaces
# (scripts/netns.sh: a bridge, dnsmasq as the "site's" DHCP server handing out addresses
# only); the lab's server runs with `--dhcp proxy` on the host end of it and the VMs sit on
# tap devices, so each PXE request and answer is on the dashboard's "PXE requests" list.
# --dhcp full there runs Dragonfly as the only DHCP server instead of dnsmasq. Firmware
# uefi-http (bridge only) boots with OVMF's HTTP boot. No real network is touched.
#
# Without --server it starts target/x86_64-unknown-linux-musl/release/dragonfly (built first
# unless --no-build) on 127.0.0.1 with a fresh database in lab/, --base-url
# http://10.0.2.2:PORT (the host as QEMU's user network shows it) and --boot-dir out/netboot
# (built by image/build.sh when missing; --boot-dir DIR for another, e.g. one built with
# `image/build.sh --kernel cloud --out out/netboot-cloud`, which boots ~9 s faster under TCG),
# and creates an API token to watch the machines.
#
# Each VM gets its own MAC (52:54:00:df:00:NN), SMBIOS identity (serial DFLAB-NNNN, board and
# chassis serials, UUID), a virtio-net NIC whose DHCP boot file is the server's boot.ipxe and
# a virtio-blk disk with serial DFDISK-NNNN. Serial consoles go to lab/vmN.serial.log, the
# server's log to lab/server.log. Once a machine registers, the lab assigns it --assign OS
# (--no-assign stops at registration). With its own server (the native installer, no
# cluster) the default is the Debian 12 image scripts/os-image.sh builds (run it once, as
# root; without it the lab stops at registration and says so), served by that server: the
# agent writes it to the VM's disk, the VM boots it and cloud-init reports back. With a
# Tinkerbell server the agent chainloads HookOS instead: BIOS by kexec into ipxe.lkrn, UEFI by
# rebooting.
#
# Milestones, in seconds from each VM's start:
#   netboot    the server sent the VM's first iPXE its netboot script (server log)
#   init       the image's /init started (serial log)
#   registered the machine is in the API
#   native install: installing (the agent started), written (image on disk, verified),
#                  installed (the installed system phoned home) (API)
#   Tinkerbell:     chainload (the agent ran kexec or rebooted; serial log), hookos (the
#                  server served hookos.ipxe: the machine is `installing`; API)
# Exit status 0 when every VM reached the last milestone (installed or hookos, or registered
# with --no-assign) within --timeout seconds (default 120; 900 for a native install). QEMU
# and the server are stopped on exit.
#
# Options: --count N, --firmware bios|uefi|uefi-http, --network user|bridge, --dhcp proxy|full,
#          --server URL, --token T, --port P, --assign OS,
#          --no-assign, --timeout S (120), --memory MB (512), --accel tcg|kvm (probed),
#          --boot-dir DIR, --no-build, --keep (leave the VMs running until Ctrl-C)
set -euo pipefail
cd "$(dirname "$0")/.."

count=1 firmware=bios server="" token=${DRAGONFLY_TOKEN:-} port="" assign=default
timeout="" memory=512 accel="" build=1 keep=0 boot_dir=out/netboot network=user dhcp=proxy
while [ $# -gt 0 ]; do
  case "$1" in
    --count) count=${2:?}; shift ;;
    --firmware) firmware=${2:?}; shift ;;
    --network) network=${2:?}; shift ;;
    --dhcp) dhcp=${2:?}; shift ;;
    --server) server=${2:?}; shift ;;
    --token) token=${2:?}; shift ;;
    --port) port=${2:?}; shift ;;
    --assign) assign=${2:?}; shift ;;
    --no-assign) assign="" ;;
    --timeout) timeout=${2:?}; shift ;;
    --memory) memory=${2:?}; shift ;;
    --accel) accel=${2:?}; shift ;;
    --boot-dir) boot_dir=${2:?}; shift ;;
    --no-build) build=0 ;;
    --keep) keep=1 ;;
    -h | --help) awk 'NR > 1 && /^#/ { print substr($0, 3); next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$firmware" in bios | uefi | uefi-http) ;; *) echo "error: --firmware bios|uefi|uefi-http" >&2; exit 2 ;; esac
case "$network" in user | bridge) ;; *) echo "error: --network user|bridge" >&2; exit 2 ;; esac
case "$dhcp" in proxy | full) ;; *) echo "error: --dhcp proxy|full" >&2; exit 2 ;; esac
if [ "$network" = bridge ]; then
  [ "$(id -u)" -eq 0 ] || { echo "error: --network bridge builds network namespaces: run as root" >&2; exit 2; }
  [ -z "$server" ] || { echo "error: --network bridge runs its own server (no --server)" >&2; exit 2; }
elif [ "$firmware" = uefi-http ]; then
  echo "error: --firmware uefi-http needs --network bridge (QEMU's user network has no HTTP boot)" >&2
  exit 2
fi
netns=dfly-lab
prefix=10.213.0
[[ "$count" =~ ^[1-9][0-9]*$ ]] || { echo "error: --count N (N >= 1)" >&2; exit 2; }

lab=lab
mkdir -p "$lab"
say() { printf '%s\n' "$*"; }
now_ms() { date +%s%3N; }

scripts/deps.sh netboot
[ "$network" = user ] || scripts/deps.sh dhcp

# ---- QEMU acceleration: KVM only when the CPU offers it and a probe VM actually runs -------
# (/dev/kvm can exist without a vmx/svm CPU flag: a KVM guest then starts but never prints)
if [ -z "$accel" ]; then
  accel=tcg
  if [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
    # A working KVM keeps the firmware running until the timeout kills it (status 124); a
    # broken one (nested MSR errors...) makes QEMU exit at once.
    probe=$(bash -c 'timeout 3 qemu-system-x86_64 -accel kvm -cpu host -machine q35 -m 64 \
      -nodefaults -display none -no-reboot > "$1" 2>&1; echo $?' _ "$lab/kvm-probe.log" 2> /dev/null)
    [ "$probe" = 124 ] && accel=kvm
  fi
fi
cpu=max
[ "$accel" = kvm ] && cpu=host

# ---- the server ------------------------------------------------------------------------------
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ "$network" = user ] || scripts/netns.sh down "$netns"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

server_log=""
if [ -n "$server" ]; then
  api=${server%/}
  # Guests reach the host's loopback through QEMU's user network at 10.0.2.2.
  guest_base=$(printf '%s' "$api" | sed -E 's#^(http://)(127\.0\.0\.1|localhost)([:/]|$)#\110.0.2.2\3#')
  [ -n "$token" ] || say "note: no --token: the API cannot be watched; milestones come from the serial logs only"
else
  if [ ! -e "$boot_dir/manifest.json" ]; then
    [ "$boot_dir" = out/netboot ] || { echo "error: $boot_dir has no manifest.json" >&2; exit 1; }
    image/build.sh
  fi
  bin=${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/release/dragonfly
  if [ "$build" = 1 ]; then
    say "==> building the server (cargo build --release, a no-op when up to date)"
    cargo build --release --locked --target x86_64-unknown-linux-musl -p dragonfly > "$lab/build.log" 2>&1 \
      || { tail -n 20 "$lab/build.log" >&2; exit 1; }
  fi
  [ -x "$bin" ] || { echo "error: $bin missing (run scripts/build-release.sh)" >&2; exit 1; }
  if [ -z "$port" ]; then
    for p in $(shuf -i 20000-29999 -n 50); do
      (exec 3<> "/dev/tcp/127.0.0.1/$p") 2> /dev/null || { port=$p; break; }
    done
  fi
  [ -n "$port" ] || { echo "error: no free TCP port found" >&2; exit 1; }
  rm -f "$lab"/dragonfly.db*
  # The native installer (no cluster here): the lab's own OS image, served from a boot
  # directory of links (the artefact and images/).
  os_image=""
  if [ "$assign" = default ]; then
    os_dir=$(cat out/os-image.path 2> /dev/null || true)
    [ -f "$os_dir/debian-12.raw.zst" ] \
      || os_dir=$(dirname "$(ls -t "${DRAGONFLY_CACHE_DIR:-$HOME/.cache/dragonfly}"/os-image/*/debian-12.raw.zst 2> /dev/null | head -n 1)")
    if [ -f "$os_dir/debian-12.raw.zst" ]; then
      os_image=$os_dir/debian-12.raw.zst
      rm -rf "$lab/boot" && mkdir -p "$lab/boot/images"
      for f in "$(realpath "$boot_dir")"/*; do ln -s "$f" "$lab/boot/"; done
      ln -s "$os_image" "$lab/boot/images/lab-debian-12.raw.zst"
      boot_dir=$lab/boot
    else
      say "note: no OS image for the lab's native install (scripts/os-image.sh builds one, as root, once): stopping at registration"
      assign=""
    fi
  fi
  token=$("$bin" admin create-token --db "$lab/dragonfly.db" --name lab 2> "$lab/token.log") \
    || { cat "$lab/token.log" >&2; exit 1; }
  api=http://127.0.0.1:$port
  server_log=$lab/server.log
  if [ "$network" = bridge ]; then
    scripts/netns.sh down "$netns"
    scripts/netns.sh up "$netns" "$prefix"
    [ "$dhcp" = full ] || scripts/netns.sh dnsmasq "$netns" "$(realpath "$lab")"
    # Only on the private network's host end: nothing listens on the host's own interfaces.
    api=http://$prefix.1:$port
    guest_base=$api
    dhcp_flags=(--dhcp "$dhcp" --dhcp-interface "$netns")
    [ "$dhcp" = proxy ] || dhcp_flags+=(--dhcp-range "$prefix.100-$prefix.199" --dhcp-gateway "$prefix.1")
    "$bin" --host "$prefix.1" --port "$port" --db "$lab/dragonfly.db" --boot-dir "$boot_dir" \
      "${dhcp_flags[@]}" > "$server_log" 2>&1 &
  else
    guest_base=http://10.0.2.2:$port
    "$bin" --host 127.0.0.1 --port "$port" --db "$lab/dragonfly.db" --base-url "$guest_base" \
      --boot-dir "$boot_dir" > "$server_log" 2>&1 &
  fi
  pids+=($!)
  for _ in $(seq 1 100); do
    curl -fsS "$api/healthz" > /dev/null 2>&1 && break
    kill -0 "${pids[0]}" 2> /dev/null || { tail -n 20 "$server_log" >&2; exit 1; }
    sleep 0.2
  done
  curl -fsS "$api/healthz" > /dev/null || { echo "error: the server did not come up" >&2; exit 1; }
  say "==> server $api (guests: $guest_base), log $server_log"
  [ "$network" = user ] || say "==> network $prefix.0/24 in namespace $netns: DHCP $dhcp" \
    "$([ "$dhcp" = proxy ] && echo "beside dnsmasq ($prefix.2, log $lab/dnsmasq.log)")"
fi

# ---- what an assignment does: the native install or a Tinkerbell chainload --------------------
installer=$(curl -fsS "$api/healthz" 2> /dev/null | sed -n 's/.*"installer":"\([a-z]*\)".*/\1/p')
if [ -n "${os_image:-}" ]; then
  curl -fsS -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d "{\"slug\":\"lab-debian-12\",\"name\":\"Debian 12 (the lab's image)\",\"family\":\"debian\",\"version\":\"12\",
         \"image_url\":\"/images/lab-debian-12.raw.zst\",\"format\":\"raw.zst\",
         \"sha256\":\"$(cut -d' ' -f1 "$os_image.sha256")\"}" "$api/api/v1/os" > "$lab/os.json" \
    || { say "error: cannot add the lab's OS image: $(cat "$lab/os.json")"; exit 1; }
  assign=lab-debian-12
  say "==> native install of $os_image (OS lab-debian-12)"
elif [ "$assign" = default ]; then
  assign=debian-12
fi
[ -n "$timeout" ] || { [ "$installer" = native ] && [ -n "$assign" ] && timeout=900 || timeout=120; }

# ---- the VMs ---------------------------------------------------------------------------------
declare -a mac start reached
milestones=(netboot init registered chainload hookos)
[ "$installer" = native ] && milestones=(netboot init registered installing written installed)
[ -n "$assign" ] || milestones=(netboot init registered)
last=${milestones[-1]}
say "==> $count VM(s), $firmware firmware, $network network, $accel, -m $memory; target milestone: $last"

for i in $(seq 1 "$count"); do
  m=$(printf '52:54:00:df:%02x:%02x' $((i / 256)) $((i % 256)))
  mac[i]=$m
  n=$(printf '%04d' "$i")
  rm -f "$lab/vm$i".*
  truncate -s 8G "$lab/vm$i.disk"
  fw=()
  if [ "$firmware" != bios ]; then
    cp /usr/share/OVMF/OVMF_VARS_4M.fd "$lab/vm$i.vars.fd"
    fw=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"
      -drive "if=pflash,format=raw,unit=1,file=$lab/vm$i.vars.fd")
  fi
  # OVMF offers PXE before HTTP boot: without PXE it boots over HTTP.
  [ "$firmware" = uefi-http ] && fw+=(-fw_cfg name=opt/org.tianocore/IPv4PXESupport,string=n
    -fw_cfg name=opt/org.tianocore/IPv6Support,string=n)
  if [ "$network" = bridge ]; then
    scripts/netns.sh tap "$netns" "tap$i"
    run=(ip netns exec "$netns" qemu-system-x86_64)
    netdev="tap,id=n0,ifname=tap$i,script=no,downscript=no"
    # QEMU's NIC ROM is iPXE: UEFI machines use the firmware's own PXE and HTTP boot instead.
    rom=""
    [ "$firmware" = bios ] || rom=",romfile="
  else
    run=(qemu-system-x86_64)
    netdev="user,id=n0,bootfile=$guest_base/boot/boot.ipxe"
    rom=""
  fi
  start[i]=$(now_ms)
  "${run[@]}" -name "dragonfly-lab-vm$i" -machine q35 -accel "$accel" -cpu "$cpu" \
    -smp 1 -m "$memory" "${fw[@]}" \
    -smbios "type=1,manufacturer=Dragonfly Lab,product=Lab VM,version=1,serial=DFLAB-$n,uuid=d4a90000-1ab0-4000-8000-$(printf '%012x' "$i"),sku=LAB,family=Lab" \
    -smbios "type=2,manufacturer=Dragonfly Lab,product=Lab Board,serial=DFBOARD-$n" \
    -smbios "type=3,manufacturer=Dragonfly Lab,serial=DFCHASSIS-$n,asset=lab-vm$i" \
    -netdev "$netdev" \
    -device "virtio-net-pci,netdev=n0,mac=$m,bootindex=1$rom" \
    -drive "if=none,id=d0,format=raw,file=$lab/vm$i.disk" \
    -device "virtio-blk-pci,drive=d0,serial=DFDISK-$n,bootindex=2" \
    -display none -monitor none -serial "file:$lab/vm$i.serial.log" \
    > "$lab/vm$i.qemu.log" 2>&1 &
  pids+=($!)
  say "    vm$i  mac $m  serial DFLAB-$n  disk DFDISK-$n  console $lab/vm$i.serial.log"
done

# ---- watching --------------------------------------------------------------------------------
api_get() { curl -fsS -H "Authorization: Bearer $token" "$api$1" 2> /dev/null; }
json_field() { grep -o "\"$1\":\"[^\"]*\"" | head -n 1 | cut -d'"' -f4; }

# Sets `seen` to the milestones VM $1 has reached now (space separated); assigns the OS once
# the machine is discovered.
declare -a assigned
observe() {
  local i=$1 m=${mac[$1]} log=$lab/vm$1.serial.log item state id
  seen=""
  if [ -n "$server_log" ]; then
    grep -q "boot script.*$m.*netboot" "$server_log" && seen+=" netboot"
  elif grep -qa "Dragonfly: booting the inventory image" "$log" 2>/dev/null; then
    seen+=" netboot"
  fi
  grep -qa "dragonfly: init started" "$log" 2> /dev/null && seen+=" init"
  if [ -n "$token" ] && item=$(api_get "/api/v1/machines?q=$m") && [ -n "$(json_field id <<< "$item")" ]; then
    seen+=" registered"
    state=$(json_field state <<< "$item")
    id=$(json_field id <<< "$item")
    if [ -n "$assign" ] && [ "$state" = discovered ] && [ -z "${assigned[$i]:-}" ]; then
      assigned[i]=1
      curl -fsS -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        -d "{\"os\":\"$assign\",\"target_disk\":{\"serial\":\"DFDISK-$(printf '%04d' "$i")\"}}" \
        "$api/api/v1/machines/$id/assign" > "$lab/vm$i.assign.json" 2>&1 \
        || say "    vm$i: assigning $assign failed: $(cat "$lab/vm$i.assign.json")"
    fi
    if [ "$installer" = native ]; then
      case "$state" in installing | installed) seen+=" installing" ;; esac
      [ -n "$(json_field written_at <<< "$item")" ] && seen+=" written"
      [ "$state" = installed ] && seen+=" installed"
    else
      case "$state" in installing | installed) seen+=" hookos" ;; esac
    fi
  elif [ -z "$token" ] && grep -qa "registered" "$log" 2>/dev/null; then
    seen+=" registered"
  fi
  grep -qaE "running: kexec -e|running: reboot" "$log" 2> /dev/null && seen+=" chainload"
  return 0
}

deadline=$(($(now_ms) + timeout * 1000))
while :; do
  done_count=0
  for i in $(seq 1 "$count"); do
    observe "$i"
    for ms in $seen; do
      if [ -z "${reached[$i]:-}" ] || [[ " ${reached[$i]} " != *" $ms="* ]]; then
        t=$(( $(now_ms) - start[i] ))
        reached[i]="${reached[$i]:-} $ms=$((t / 1000)).$(printf '%01d' $(((t % 1000) / 100)))"
        say "    vm$i  $ms at ${reached[$i]##*=} s"
      fi
    done
    [[ " ${reached[$i]:-} " == *" $last="* ]] && done_count=$((done_count + 1))
  done
  [ "$done_count" -eq "$count" ] && break
  [ "$(now_ms)" -ge "$deadline" ] && break
  sleep 0.5
done

# ---- summary ---------------------------------------------------------------------------------
say "==> summary (seconds from VM start; - = not reached)"
printf '    %-5s %-17s' vm mac
printf ' %10s' "${milestones[@]}"
printf '\n'
failed=0
for i in $(seq 1 "$count"); do
  printf '    %-5s %-17s' "vm$i" "${mac[$i]}"
  for ms in "${milestones[@]}"; do
    v=-
    [[ " ${reached[$i]:-} " == *" $ms="* ]] && v=${reached[$i]#*" $ms="} && v=${v%% *}
    printf ' %10s' "$v"
  done
  printf '\n'
  [[ " ${reached[$i]:-} " == *" $last="* ]] || failed=$((failed + 1))
done
if [ "$keep" = 1 ]; then
  say "==> VMs left running (--keep); Ctrl-C stops them and the server"
  while :; do sleep 3600; done
fi
[ "$failed" -eq 0 ] || { say "==> $failed VM(s) did not reach $last within $timeout s"; exit 1; }
