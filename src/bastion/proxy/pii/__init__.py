"""Personal data and secrets: detected with Presidio, redacted before they leave Bastion.

- :mod:`config` parses ``policies/pii.yaml`` (actions per entity type and direction);
- :mod:`recognizers` adds Bastion's own recognizers (secrets, a fast phone pattern);
- :mod:`detector` runs the analysis with a content-keyed cache, off the event loop;
- :mod:`redactor` applies the actions, with reversible pseudonyms per conversation;
- :mod:`bodies` finds the texts in each API's JSON; :mod:`streams` does the same on SSE with a
  hold-back buffer.
"""
