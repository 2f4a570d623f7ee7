// Command etcd is the etcd server built from the same module graph as the pinned kube-apiserver, so the
// local control plane needs nothing but the Go module proxy.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
