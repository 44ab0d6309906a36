"""Alert -> VOEvent 2.0 (``build``, per survey ``rubin`` and ``ztf``, with ``spec``), the Citations history
(``history``), safe parsing of incoming VOEvents (``parse``) and reading them into a view (``read``), and XSD
validation (``validate``).

Touches no network. The mapping from alert fields to VOEvent elements is written down in docs/mapping.rst.
"""
