#!/usr/bin/env bash
# make image: an OCI archive of Veer, built from scratch with buildah, pulling nothing.
#
# The image holds veerd and veerctl (release, Swift runtime linked statically), the BPF
# objects where veerd looks for them (/usr/lib/veer: the socket programs and the packet
# path's), the shared libraries they still need, copied from this machine's Debian packages
# (libbpf, libelf, zlib, glibc, libstdc++, and libnftables for the packet path's NAT hooks), with
# those packages' copyright files, and busybox (Debian's busybox-static) for the DaemonSet's
# init container: sh, grep and mount. Nothing else: no package manager, no shell profile.
#
# Every step is named; a failure says which one failed. Needs root (buildah's storage).
# Prints the archive's size: the target is at most 60 MB, and `make test` checks it.
set -Eeuo pipefail

BIN=${VEER_RELEASE_BIN:?the release build directory holding veerd and veerctl}
BPF_OBJECT=${VEER_BPF_OBJECT:?the compiled BPF object}
TC_OBJECT=${VEER_TC_OBJECT:?the compiled packet-path object}
VERSION=${VEER_VERSION:?}
REVISION=${VEER_GIT_REVISION:?}
IMAGE=${VEER_IMAGE:?the image name, e.g. localhost/veer:0.1.0}
SOURCE=${VEER_IMAGE_SOURCE:?the repository URL for org.opencontainers.image.source}
ARCHIVE=${VEER_IMAGE_ARCHIVE:?where to write the OCI archive}
BUSYBOX=${BUSYBOX:-/bin/busybox}

STEP="start"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/veer-image.XXXXXX")
CONTAINER=""
cleanup() {
	[[ -n $CONTAINER ]] && buildah rm "$CONTAINER" >/dev/null 2>&1
	[[ -n ${VEER_IMAGE_KEEP:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "make image: step \"$STEP\" failed (exit $?)" >&2' ERR
step() { STEP=$1; echo "  IMAGE $1"; }

ROOT=$WORK/rootfs
LIBDIR=/usr/lib/$(gcc -print-multiarch 2>/dev/null || dpkg-architecture -qDEB_HOST_MULTIARCH)

step "check inputs"
for f in "$BIN/veerd" "$BIN/veerctl"; do
	[[ -x $f ]] || { echo "make image: $f is not built" >&2; false; }
done
[[ -r $BPF_OBJECT ]] || { echo "make image: $BPF_OBJECT is not built" >&2; false; }
[[ -r $TC_OBJECT ]] || { echo "make image: $TC_OBJECT (the packet path) is not built" >&2; false; }
[[ -r $LIBDIR/libnftables.so.1 ]] || { echo "make image: $LIBDIR/libnftables.so.1 is missing (Debian: libnftables1)" >&2; false; }
[[ -x $BUSYBOX ]] && ! ldd "$BUSYBOX" >/dev/null 2>&1 ||
	{ echo "make image: $BUSYBOX is not a static busybox (Debian's busybox-static)" >&2; false; }

step "lay out the root filesystem"
# Debian's merged /usr: /bin, /lib and /lib64 are links into /usr, so the ELF interpreter
# path (/lib64/ld-linux-x86-64.so.2) and every library path resolve.
mkdir -p "$ROOT"/usr/{bin,lib/veer,lib64,share/doc} "$ROOT$LIBDIR" "$ROOT"/{etc,run,tmp,sys,proc,dev}
ln -s usr/bin "$ROOT/bin"
ln -s usr/lib "$ROOT/lib"
ln -s usr/lib64 "$ROOT/lib64"
chmod 1777 "$ROOT/tmp"
printf 'root:x:0:0:root:/:/bin/sh\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\n' >"$ROOT/etc/group"

step "copy veerd, veerctl and the BPF objects (stripped)"
for b in veerd veerctl; do
	# Debug info and symbols are half of a static Swift binary. Without swift-backtrace in the
	# image, a crash prints addresses either way: symbolise them with the unstripped binaries
	# of the same revision in .build/release (addr2line -f -e veerd ADDRESS).
	strip --strip-all -o "$ROOT/usr/bin/$b" "$BIN/$b"
	chmod 0755 "$ROOT/usr/bin/$b"
done
install -m 0644 "$BPF_OBJECT" "$ROOT/usr/lib/veer/veer_sock.bpf.o"
install -m 0644 "$TC_OBJECT" "$ROOT/usr/lib/veer/veer_tc.bpf.o"

step "copy busybox (sh, grep, mount for the init container)"
install -m 0755 "$BUSYBOX" "$ROOT/usr/bin/busybox"
for tool in sh grep mount umount cat ls; do ln -s busybox "$ROOT/usr/bin/$tool"; done

step "copy the shared libraries veerd and veerctl need"
# ldd lists the resolved path of each library (and the interpreter); each is copied, as
# the file it points to, under its /usr path: /lib/x86_64-linux-gnu/libbpf.so.1 lands in
# /usr/lib/x86_64-linux-gnu/libbpf.so.1.
declare -A files=()
for b in veerd veerctl; do
	while read -r path; do files[$path]=1; done < <(ldd "$BIN/$b" | grep -oE '/[^ ]+' | grep -v "^$BIN/")
done
# The packet path's NAT hooks load libnftables at run time (dlopen): ldd cannot see it.
files[$LIBDIR/libnftables.so.1]=1
while read -r path; do files[$path]=1; done < <(ldd "$LIBDIR/libnftables.so.1" | grep -oE '/[^ ]+')
for path in "${!files[@]}"; do
	dest=$path
	[[ $dest == /lib/* || $dest == /lib64/* ]] && dest=/usr$dest
	mkdir -p "$ROOT$(dirname "$dest")"
	cp -L "$path" "$ROOT$dest"
done

step "copy the copyright files of the Debian packages those files came from"
packages=$(for path in "${!files[@]}" "$BUSYBOX"; do
	dpkg -S "$(readlink -f "$path")" 2>/dev/null || dpkg -S "$path" 2>/dev/null || true
done | cut -d: -f1 | sort -u)
for p in $packages; do
	[[ -r /usr/share/doc/$p/copyright ]] || continue
	mkdir -p "$ROOT/usr/share/doc/$p"
	cp /usr/share/doc/"$p"/copyright "$ROOT/usr/share/doc/$p/"
done

step "check that veerd and veerctl run in the root filesystem alone"
# A missing library would only show on a node; a chroot shows it here. With its own /proc, in
# a private mount namespace that vanishes with it: the Swift runtime reads a static binary's
# arguments from /proc/self/cmdline, and without it `--version` would not be seen.
in_root() { unshare --mount --propagation private --pid --fork --mount-proc="$ROOT/proc" chroot "$ROOT" "$@"; }
for b in veerd veerctl; do
	out=$(in_root /usr/bin/$b --version) || { echo "make image: $b does not run in the image's root filesystem" >&2; false; }
	[[ $out == *"$REVISION"* ]] || { echo "make image: $b --version says '$out', not revision $REVISION" >&2; false; }
done
in_root /bin/sh -c 'command -v mount && command -v grep' >/dev/null ||
	{ echo "make image: the init container's sh, grep or mount is missing" >&2; false; }

step "build the image from scratch (buildah)"
CONTAINER=$(buildah from --name "veer-image-$$" scratch)
buildah copy --quiet "$CONTAINER" "$ROOT" / >/dev/null
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
buildah config \
	--env PATH=/usr/bin \
	--workingdir / \
	--cmd veerd \
	--label org.opencontainers.image.title=veer \
	--label "org.opencontainers.image.description=Veer: socket-level Kubernetes Service load balancing (veerd, veerctl, the BPF object)" \
	--label "org.opencontainers.image.source=$SOURCE" \
	--label "org.opencontainers.image.version=$VERSION" \
	--label "org.opencontainers.image.revision=$REVISION" \
	--label "org.opencontainers.image.created=$created" \
	"$CONTAINER"

step "commit the image (buildah), its layer uncompressed"
LAYOUT=$WORK/layout
buildah commit --quiet --format oci --disable-compression --rm "$CONTAINER" "oci:$LAYOUT:veer" >/dev/null
CONTAINER=""

step "compress the layer (gzip -9)"
# GNU gzip -9 makes the layer ~6% smaller than the Go gzip of buildah and skopeo, which keeps
# the image within 60 MB. gzip, not zstd: every docker, containerd and podman can load it.
# The manifest then names the compressed blob; the config's diff_ids stay the tar's digest.
blob() { echo "$LAYOUT/blobs/sha256/${1#sha256:}"; }
digest() { echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"; }
manifest=$(jq -er '.manifests[0].digest' "$LAYOUT/index.json")
layer=$(jq -er '.layers | if length == 1 then .[0].digest else error("expected one layer") end' "$(blob "$manifest")")
gzip -9 -n -c "$(blob "$layer")" >"$WORK/layer.tar.gz"
gz_digest=$(digest "$WORK/layer.tar.gz")
mv "$WORK/layer.tar.gz" "$(blob "$gz_digest")"
jq -c --arg d "$gz_digest" --argjson n "$(stat -c %s "$(blob "$gz_digest")")" \
	'.layers[0] += {mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $d, size: $n}' \
	"$(blob "$manifest")" >"$WORK/manifest.json"
new_manifest=$(digest "$WORK/manifest.json")
mv "$WORK/manifest.json" "$(blob "$new_manifest")"
rm -f "$(blob "$layer")" "$(blob "$manifest")"
jq -c --arg d "$new_manifest" --argjson n "$(stat -c %s "$(blob "$new_manifest")")" \
	'.manifests[0] += {digest: $d, size: $n}' "$LAYOUT/index.json" >"$WORK/index.json"
mv "$WORK/index.json" "$LAYOUT/index.json"

step "write the OCI archive (skopeo, which checks every digest on the way)"
mkdir -p "$(dirname "$ARCHIVE")"
rm -f "$ARCHIVE.tmp"
skopeo copy --quiet "oci:$LAYOUT:veer" "oci-archive:$ARCHIVE.tmp:$IMAGE"
mv "$ARCHIVE.tmp" "$ARCHIVE"

STEP="report"
size=$(stat -c %s "$ARCHIVE")
printf '  IMAGE %s (%s %s) -> %s: %d.%d MB\n' "$IMAGE" "$VERSION" "${REVISION:0:12}" "$ARCHIVE" \
	$((size / 1000000)) $((size % 1000000 / 100000))
printf '  IMAGE load it with: podman load -i %s | docker load -i %s | ctr -n k8s.io images import %s\n' \
	"$ARCHIVE" "$ARCHIVE" "$ARCHIVE"
