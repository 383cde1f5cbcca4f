"""Exceptions shared by the physics core and the pipeline."""


class InputError(ValueError):
    """Bad user input (event, geometry, pixel list, configuration).

    The message is one line that names the problem; the CLI prints it and exits with 2.
    """
