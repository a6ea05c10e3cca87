"""What ImportTable and a live table need: the import request, the settings applied after an
import, and a config written from a live table's metadata (`init`). Above config, below the
commands that call AWS with it.
"""
