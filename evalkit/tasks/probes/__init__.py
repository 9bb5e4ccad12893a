"""The transfer suite's probes: document generators (`docgen`, listed in
`evalkit.tasks.generators.GENERATORS`), language data (`languages`) and probe tasks that the
native YAML kinds cannot express, loaded from `kind: probe` YAML files (`registry`, by probe
name: `fewshot`, `labels`, `token_level`, `niah`; their base pieces in `common` and `mc`)."""
