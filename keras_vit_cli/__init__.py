"""The `keras-vit` program's entry point, outside the `keras_vit` package so
that it runs before the package loads.

`keras-vit weights ...` lists and fetches checkpoint files, which needs
neither TensorFlow nor Keras; every other subcommand loads the model API as
`import keras_vit` does.
"""

import os
import sys


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    light = argv[:1] == ["weights"]
    if light and "keras_vit" not in sys.modules:
        os.environ["KERAS_VIT_LIGHT_IMPORT"] = "1"
        try:
            import keras_vit
        finally:
            del os.environ["KERAS_VIT_LIGHT_IMPORT"]
    import keras_vit
    from keras_vit.cli import main as cli_main

    if not light:
        keras_vit.load_model_api()
    return cli_main(argv)
