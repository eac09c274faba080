"""``swan`` subcommands that serve the dashboard (registered in swan_index.cli)."""
