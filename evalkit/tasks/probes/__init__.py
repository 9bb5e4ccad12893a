"""The transfer suite's probes: document generators (`docgen`, listed in
`evalkit.tasks.generators.GENERATORS`), language data (`languages`) and probe tasks that the
native YAML kinds cannot express (`tasks`, loaded from `kind: probe` YAML files)."""
