#!/usr/bin/env python3
"""Regenerate stages/kinds/kg2qa_tables.c from stages/kinds/kg2qa_templates.json (run from the repo root)."""
import json

src = open('stages/kinds/kg2qa_templates.json', encoding='utf-8').read()
json.loads(src)  # must be valid JSON
out = ['/*', ' * stages/kinds/kg2qa_tables.c — the shipped kg2qa template tables, compiled in.',
       ' * The same text as stages/kinds/kg2qa_templates.json (a test checks they agree);',
       ' * edit the JSON and regenerate with tests/stages/gen_kg2qa_tables.py.', ' */',
       '#include "stages/kinds/kinds.h"', '', 'const char mf_kg2qa_default_templates[] =']
for line in src.split('\n'):
    if line:
        out.append('    "' + line.replace('\\', '\\\\').replace('"', '\\"') + '\\n"')
out[-1] += ';'
open('stages/kinds/kg2qa_tables.c', 'w', encoding='utf-8').write('\n'.join(out) + '\n')
