"""pytest plugin (fixtures land with the command-line issue)."""
