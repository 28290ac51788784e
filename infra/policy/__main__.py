"""Policy pack entry: `pulumi preview --policy-pack infra/policy` (or `pulumi up`) runs it."""

from modelyard.infra.policy.pack import serve

serve()
