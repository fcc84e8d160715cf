# Sourced by scripts/test, scripts/conformance and scripts/client-tests (bash).
#
# Everything the tests download — Node 22, npm packages, Python venvs and wheels — lives
# outside the clone, in $GATEHOUSE_TOOLS (default ~/.cache/gatehouse-tools), so that a fresh
# clone (CI makes one per run) reuses it instead of downloading it again. `.tools` in the
# clone is a link to it, for the tests that look there. Each install is pinned and checked
# by its script, so clones of different versions can share the folder.

# use_tools_dir: creates the folder and the link; sets TOOLS to the folder's real path
# (absolute paths inside venvs then stay valid for every clone).
use_tools_dir() {
    local cache="${GATEHOUSE_TOOLS:-$HOME/.cache/gatehouse-tools}"
    mkdir -p "$cache" || return 1
    TOOLS="$(cd "$cache" && pwd -P)" || return 1
    if [[ -d .tools && ! -L .tools ]]; then
        # A folder from before the shared cache: its venvs hold this clone's paths, so it is
        # dropped rather than moved; what it held is installed once more into the cache.
        echo "replacing the in-clone .tools folder by a link to $TOOLS" >&2
        rm -rf .tools || return 1
    fi
    if [[ "$(readlink .tools 2>/dev/null)" != "$TOOLS" ]]; then
        ln -sfn "$TOOLS" .tools || return 1
    fi
}
