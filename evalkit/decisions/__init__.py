"""The decision commands behind `evalkit.api`: `compare`, `gate`, `attribute`, `contamination`,
one module each. They read stored runs (`evalkit.store`) and hand them to `evalkit.analysis`;
what needs the model again goes through the pipeline and says so (docs/pipeline.md)."""
