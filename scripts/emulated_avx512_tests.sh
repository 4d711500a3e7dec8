#!/usr/bin/env bash
# emulated_avx512_tests.sh — the C++ suite's cases of the AVX-512 paths, run under Bochs (an x86
# emulator with AVX-512 F/CD/BW/DQ/VL, CPU model Skylake-X) on a machine whose CPU lacks
# AVX-512, so that those builds are checked where they cannot run natively. Correctness only:
# times under emulation mean nothing. Bochs 2.7 (Debian 12) has no AVX512-BF16 or AMX: a build
# configured with -DFLASHATTN_EMULATED_BF16_AMX=ON writes both as AVX-512 code
# (tests/emulated/bf16_amx_instructions.hpp), and then the avx512_bf16 and amx cases run too.
#
#   bash scripts/emulated_avx512_tests.sh [BUILD_DIR] [GTEST_FILTER]
#
# BUILD_DIR (default build) holds a built tests/flashattn_tests. GTEST_FILTER defaults to every
# case of the avx512 path (about 265, ~12–20 minutes on 2 cores), or in an emulated-BF16/AMX
# build to the cases of the avx512_bf16 and amx paths that meet what those builds do
# differently (below) — but, either way, two that Bochs fails on its own: its vcvtps2ph
# rounds f32 → f16 ties away from even (the AVX2 build's F16C form fails VectorConversion under
# Bochs too, and passes on hardware), and so does one KvCache16Bit case whose f16 outputs hold
# such ties. Each core (or SHARDS) boots its own emulated machine — a Debian kernel and an
# initramfs holding busybox, the test binary and its libraries — and runs one gtest shard; the
# output lands in BUILD_DIR/emulated/shard-N.log. Exit status 0 when every shard ran and passed.
set -euo pipefail

build=$(realpath "${1:-build}")
bochs_errors=EveryIsa/VectorConversion.*:Shapes/KvCache16Bit.*_d64_cap4106_*
if grep -q '^FLASHATTN_EMULATED_BF16_AMX:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null; then
  # What these builds do differently: their bf16 products, and the padding to AMX tiles that
  # split-KV and the KV cache's calls also meet. ('*avx512_bf16:*amx' runs every case.)
  paths='Sweep/DtypeAccuracy.*:Decode/SplitKv.*:Shapes/KvCache*'
  filter=${2:-${paths//:/_avx512_bf16:}_avx512_bf16:${paths//:/_amx:}_amx:Dtype.*:-$bochs_errors}
else
  filter=${2:-*avx512:-$bochs_errors}
fi
binary=$build/tests/flashattn_tests
work=$build/emulated
[[ -x $binary ]] || { echo "emulated_avx512_tests: $binary not found: build the tests first" >&2; exit 2; }

sudo_if_needed() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
packages=(bochs bochs-x xvfb xauth bochsbios vgabios isolinux syslinux-common genisoimage busybox-static cpio)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  sudo_if_needed apt-get update -q
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

mkdir -p "$work"
# The distribution's kernel, unpacked (not installed).
kernel_package=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
vmlinuz=$work/kernel/boot/vmlinuz-${kernel_package#linux-image-}
if [[ ! -f $vmlinuz ]]; then
  (cd "$work" && rm -rf linux-image-*.deb kernel && apt-get download "$kernel_package" && dpkg-deb -x linux-image-*.deb kernel &&
    rm linux-image-*.deb)
fi

# The initramfs: busybox, the test binary, its libraries, and an init that runs the shard its
# kernel command line names (unknown NAME=value arguments reach init as its environment).
root=$work/root
rm -rf "$root" && mkdir -p "$root"/{bin,proc,sys,dev,t,tmp}
cp /bin/busybox "$root/bin/"
cp "$binary" "$root/t/"
for lib in $(ldd "$binary" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")" && cp -L "$lib" "$root$lib"
done
cat >"$root/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
echo "=== cpu: \$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
echo "=== avx-512: \$(grep -m1 flags /proc/cpuinfo | tr ' ' '\n' | grep avx512 | tr '\n' ' ')"
cd /t && OMP_NUM_THREADS=1 GTEST_COLOR=no ./flashattn_tests --gtest_filter='$filter'
echo "=== exit status \$?"
sync; sleep 2; poweroff -f
EOF
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"

shards=${SHARDS:-$(nproc)}
for ((s = 0; s < shards; ++s)); do
  iso=$work/iso-$s && rm -rf "$iso" && mkdir -p "$iso/isolinux"
  cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$iso/isolinux/"
  cp "$vmlinuz" "$iso/vmlinuz" && cp "$work/initrd.gz" "$iso/"
  # nopku, clearcpuid: Bochs 2.7 misreports the compacted XSAVE area's size, and Linux, finding
  # it inconsistent, would turn XSAVE (and with it AVX) off; the standard format is reported right.
  cat >"$iso/isolinux/isolinux.cfg" <<EOF
default linux
prompt 0
label linux
  kernel /vmlinuz
  append initrd=/initrd.gz console=ttyS0 loglevel=3 nopku clearcpuid=xsaves,xsavec mitigations=off GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$s
EOF
  genisoimage -quiet -o "$work/boot-$s.iso" -b isolinux/isolinux.bin -c isolinux/boot.cat -no-emul-boot \
    -boot-load-size 4 -boot-info-table -R "$iso"
  cat >"$work/bochsrc-$s" <<EOF
memory: guest=1536, host=1536
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
cpu: model=corei7_skylake_x, count=1, ips=400000000
ata0-master: type=cdrom, path=$work/boot-$s.iso, status=inserted
boot: cdrom
com1: enabled=1, mode=file, dev=$work/shard-$s.log
display_library: x
speaker: enabled=0
sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy
log: $work/bochs-$s.log
panic: action=fatal
error: action=ignore
info: action=ignore
clock: sync=none
EOF
done

echo "emulated_avx512_tests: $shards emulated machines, filter '$filter'; logs in $work/shard-N.log"
for ((s = 0; s < shards; ++s)); do
  rm -f "$work/shard-$s.log"
  # Debian's bochs has its debugger built in: 'c' starts the machine. Its display is an X
  # window on a virtual X server (Xvfb, no TCP).
  (printf 'c\nquit\n' | timeout 2h xvfb-run -a -s "-nolisten tcp" bochs -q -f "$work/bochsrc-$s" \
    >"$work/bochs-$s.out" 2>&1 || true) &
done
wait

status=0
for ((s = 0; s < shards; ++s)); do
  log=$work/shard-$s.log
  grep -a -E '^=== |^\[  (PASSED|FAILED)  \]' "$log" | sed "s/^/shard $s: /" || true
  grep -a -q '^\[  PASSED  \]' "$log" && grep -a -q '^=== exit status 0' "$log" || status=1
done
exit $status
