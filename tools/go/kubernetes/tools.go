//go:build tools

// Pins the provider module in go.mod/go.sum. build.sh copies its cmd/pulumi-resource-kubernetes out of
// the module cache into a scratch copy of this module, since that package embeds a generated file
// (schema-embed.json) that the published module does not contain.
package tools

import (
	_ "github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	_ "github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
	_ "github.com/pulumi/pulumi/pkg/v3/codegen/schema" // used by the cmd's generate.go
)
