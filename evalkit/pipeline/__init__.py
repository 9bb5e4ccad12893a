"""The scoring pipeline, stage by stage (docs/pipeline.md):

    RunConfig ─► plan ─► execute ─► score_items ─► aggregate ─► write
    (config)    (plan)  (execute)  (score_items)  (evalkit.aggregate)  (write)

Each stage is a function from frozen values to frozen values; `evalkit.pipeline.run.run`
composes them. Nothing is imported here, so `evalkit.pipeline.config` stays importable by the
schema without pulling in the stages.
"""
