// etcd, as etcd's own main.go starts it (go.etcd.io/etcd/v3 cannot be installed from the proxy: its
// go.mod has local replaces).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
