"""The Typer application object; command modules attach themselves to it."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="privpart",
    help=(
        "privpart: find where to cut a neural network for private split inference.\n\n"
        "List a model's legal cuts, train a target model, attack every cut, profile it, pick the "
        "fastest cut no attack breaks, and serve the split (head in an enclave or on the device, "
        "tail on an untrusted accelerator)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@app.callback()
def _group() -> None:
    """Keeps `privpart COMMAND` a command group when only COMMAND's module is loaded (Typer
    runs a lone command without its name otherwise)."""
