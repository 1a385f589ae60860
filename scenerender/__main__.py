"""``python -m scenerender``: the same start as the ``scenerender`` console script."""

from scenerender.cli.entry import main

if __name__ == "__main__":
    main()
