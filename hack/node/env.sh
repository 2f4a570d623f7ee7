# Sourced by the scripts that run sealmesh's JavaScript (tests, CI, the demo, the bench): puts the pinned
# Node.js (hack/node/install.sh) first on PATH, so `node`, `npm` and every child process use it.
sealmesh_node_bin=$(bash "$(dirname "${BASH_SOURCE[0]}")/install.sh")
case ":$PATH:" in *":$sealmesh_node_bin:"*) ;; *) export PATH=$sealmesh_node_bin:$PATH ;; esac
unset sealmesh_node_bin
