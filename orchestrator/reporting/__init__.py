"""The report's modules, one job each (``orchestrator.report`` re-exports their public API).

``labels`` (names, order, numbers) -> ``summary`` (store rows -> one row per setting) ->
``selection`` (which configs become rows; select on one split, report on another) ->
``evidence`` (bootstrap intervals over paired images, influence) -> ``model`` (table objects) ->
``layouts`` / ``notes`` (a section -> a table) -> ``build`` (store rows -> tables) -> ``formats``
(md / latex / html / csv) -> ``entry`` (store in, files out). Nothing here imports
``orchestrator.report`` or ``orchestrator.figures`` except ``entry`` (figures for the demo).
"""
