#!/usr/bin/env bash
# Installs what sluice's test suite needs, skipping whatever is already there:
#   - tansu (the Kafka-compatible broker the integration tests run), built from crates.io
#     into ~/.cargo/bin with the memory (dynostore) and sqlite (libsql) storage engines;
#   - Debian packages: mosquitto, mosquitto-clients, stunnel4, python3-venv, curl;
#   - a Python venv with the pinned clients of tools/requirements.txt;
#   - cargo-fuzz and the nightly toolchain for the codec fuzz smoke runs.
#   - MQTT.js (npm mqtt@5) under $SLUICE_CACHE/node, for re-capturing the MQTT fixtures.
# Quiet on a warm machine; says what it installs on a cold one. Safe to run concurrently
# (one lock) and repeatedly.
#
# Environment: SLUICE_CACHE (default ~/.cache/sluice) holds the venv;
# TANSU_BIN, if set, names a tansu binary to use instead of installing one.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tansu_version=0.6.0
tansu_features=dynostore,libsql
cargo_fuzz_version=0.13.2
cache="${SLUICE_CACHE:-$HOME/.cache/sluice}"
venv="$cache/venv"
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$cargo_bin:$PATH"

say() { echo "install-deps: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

mkdir -p "$cache"
exec 9>"$cache/install-deps.lock"
flock 9

# --- tansu -------------------------------------------------------------------------------
# `tansu --version` prints "tansu 0.6.0"; `tansu --help` ends with the compiled-in storage
# engines ("Storage engines: dynostore, libsql"). Both must match: a build without libsql
# cannot run the SASL tests (sqlite engine).
tansu_ok() {
    local bin="$1"
    [[ -x "$bin" ]] || return 1
    [[ "$("$bin" --version 2>/dev/null)" == "tansu $tansu_version" ]] || return 1
    local engines
    engines="$("$bin" --help 2>/dev/null | sed -n 's/^Storage engines: //p')"
    [[ ", $engines," == *", dynostore,"* && ", $engines," == *", libsql,"* ]]
}

if [[ -n "${TANSU_BIN:-}" ]]; then
    tansu_ok "$TANSU_BIN" ||
        die "TANSU_BIN=$TANSU_BIN is not tansu $tansu_version with storage engines $tansu_features"
elif ! tansu_ok "$cargo_bin/tansu"; then
    say "installing tansu $tansu_version ($tansu_features) into $cargo_bin (about 11 min on 2 cores)"
    cargo install tansu --version "$tansu_version" --locked --force --quiet \
        --no-default-features --features "$tansu_features"
    tansu_ok "$cargo_bin/tansu" || die "tansu was installed but $cargo_bin/tansu does not report $tansu_version with $tansu_features"
fi

# --- Debian packages ---------------------------------------------------------------------
missing=()
need_pkg() { # <package> <command that succeeds when it is installed>
    local pkg="$1"
    shift
    "$@" >/dev/null 2>&1 || missing+=("$pkg")
}
need_pkg mosquitto test -x /usr/sbin/mosquitto
need_pkg mosquitto-clients command -v mosquitto_pub mosquitto_sub
need_pkg stunnel4 command -v stunnel4
need_pkg curl command -v curl
# Debian splits ensurepip (which `python3 -m venv` needs) out of python3 into python3-venv.
need_pkg python3-venv python3 -c 'import ensurepip, venv'
if ((${#missing[@]})); then
    say "installing Debian packages: ${missing[*]}"
    sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "need root or sudo to install ${missing[*]}"
        sudo=(sudo -n)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq >/dev/null
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Python venv ---------------------------------------------------------------------------
python3="$(command -v python3)" || die "python3 is missing"
stamp_file="$venv/.sluice-requirements.sha256"
stamp="$(
    {
        sha256sum <"$here/requirements.txt"
        "$python3" --version 2>&1
    } | sha256sum | cut -d' ' -f1
)"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c '' 2>/dev/null ||
    [[ "$(cat "$stamp_file" 2>/dev/null)" != "$stamp" ]]; then
    if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c '' 2>/dev/null; then
        say "creating Python venv $venv"
        rm -rf "$venv"
        "$python3" -m venv "$venv" || die "python3 -m venv failed (is python3-venv installed?)"
    fi
    say "installing Python clients from tools/requirements.txt into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$here/requirements.txt"
    "$venv/bin/python" -c 'import confluent_kafka, kafka, lz4, zstandard, snappy, paho.mqtt' ||
        die "the venv's Python clients do not import"
    echo "$stamp" >"$stamp_file"
fi

# --- fuzzing: nightly + cargo-fuzz ---------------------------------------------------------
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    say "installing the nightly toolchain (minimal profile) for cargo-fuzz"
    if ! rustup toolchain install nightly --profile minimal >/dev/null 2>&1; then
        say "note: no nightly toolchain here; the fuzz smoke runs use stable with" \
            "RUSTC_BOOTSTRAP=1 and no sanitizer (tools/test.sh)"
    fi
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz"
    cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked --quiet
fi

# --- MQTT.js (for the codec fixture captures) ----------------------------------------------
# codecs/tests/fixtures/mqtt/capture.py runs the real MQTT.js client with NODE_PATH pointing
# here. Needs node and npm; skipped with a warning where they are missing.
install_mqttjs() {
    local dir="$cache/node"
    [[ -d "$dir/node_modules/mqtt" ]] && return 0
    # The proxy's integration tests publish with MQTT.js (proxy/tests/mqtt_clients.rs).
    command -v npm >/dev/null ||
        die "npm is missing: install Node.js and npm (Debian: nodejs npm) for the MQTT.js tests"
    say "installing MQTT.js (npm package mqtt@5) into $dir"
    mkdir -p "$dir"
    [[ -f "$dir/package.json" ]] || echo '{"name":"sluice-node-tools","private":true}' >"$dir/package.json"
    npm install --prefix "$dir" --no-audit --no-fund --silent mqtt@5 ||
        die "npm install mqtt@5 into $dir failed"
}
install_mqttjs
