"""LiteRT interpreters, created in one place."""

_announced = False


def interpreter(**kwargs):
    """`ai_edge_litert.interpreter.Interpreter(**kwargs)`.

    LiteRT announces its CPU delegate on stderr at the first allocation in
    a process, whatever the log level; that first allocation happens here,
    without the notice (`keras_vit.command.without_notices`).
    """
    global _announced
    from ai_edge_litert.interpreter import Interpreter

    result = Interpreter(**kwargs)
    if not _announced:
        from keras_vit.command import without_notices

        _announced = True
        try:
            with without_notices():
                result.allocate_tensors()
        except (RuntimeError, ValueError):
            pass  # The caller's own use reports what is wrong.
    return result
