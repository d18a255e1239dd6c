# Config checking: one readable line naming the offending key, before snakemake's validate().

import jsonschema
import yaml
from snakemake.exceptions import WorkflowError


def check_config(cfg: dict, schema_file: str) -> None:
    """Fail with one line naming the offending key (snakemake's own message is a schema dump)."""
    with open(schema_file) as fh:
        schema = yaml.safe_load(fh)
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(cfg)
    )
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise WorkflowError(f"invalid config at '{where}': {error.message}")
