#!/usr/bin/env python3
"""Checks the references in README.md and docs/**/*.md (run from anywhere):

1. every relative Markdown link [text](path#anchor) resolves to a file, and the anchor to a
   heading of that file (GitHub's slug rule: lower case, punctuation dropped, spaces to -);
2. every repository path mentioned in the text (`results/exec/...`, docs/x.md, with * and
   {a,b} globs) exists; `plan/x.hpp` also resolves as plan/include/masep/plan/x.hpp, the
   shorthand the docs use for public headers.

Prints one line per broken reference and exits 1 if there is any. Fenced code blocks are
skipped for links (they show commands), not for paths.
"""
import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOPS = ('docs', 'results', 'tools', 'sim', 'exec', 'kernels', 'plan', 'scenarios', 'models',
        'topology', 'tests', 'cmake')
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)')
PATH = re.compile(r'(?<![\w./-])((?:' + '|'.join(TOPS) + r')/[\w./*{},-]*)')


def markdown_files():
    out = [os.path.join(ROOT, 'README.md')]
    for d, _, names in os.walk(os.path.join(ROOT, 'docs')):
        out += [os.path.join(d, n) for n in sorted(names) if n.endswith('.md')]
    return out


def slugs(path):
    out = set()
    with open(path, encoding='utf-8') as f:
        for line in f:
            m = re.match(r'#+\s+(.*)', line)
            if m:
                out.add(re.sub(r'[^\w\- ]', '', m.group(1).strip().lower()).replace(' ', '-'))
    return out


def path_exists(p):
    cands = [p]
    b = re.search(r'\{([^}]*)\}', p)
    if b:
        cands = [p[:b.start()] + x + p[b.end():] for x in b.group(1).split(',')]
    for c in cands:
        top, _, rest = c.partition('/')
        forms = [c, f'{top}/include/masep/{top}/{rest}']
        if not any(glob.glob(os.path.join(ROOT, x)) or glob.glob(os.path.join(ROOT, x) + '*')
                   for x in forms):
            return False
    return True


def main():
    broken = 0
    files = markdown_files()
    for f in files:
        rel = os.path.relpath(f, ROOT)
        in_code = False
        with open(f, encoding='utf-8') as fh:
            lines = fh.readlines()
        for n, line in enumerate(lines, 1):
            if line.lstrip().startswith('```'):
                in_code = not in_code
            if not in_code:
                for m in LINK.finditer(line):
                    target = m.group(1)
                    if re.match(r'[a-z][a-z0-9+.-]*:', target):
                        continue  # http:, mailto:, ...
                    path, _, frag = target.partition('#')
                    full = os.path.normpath(os.path.join(os.path.dirname(f), path)) if path else f
                    if not os.path.exists(full):
                        print(f'{rel}:{n}: link target missing: {target}')
                        broken += 1
                    elif frag and full.endswith('.md') and frag not in slugs(full):
                        print(f'{rel}:{n}: no heading #{frag} in {path or rel}')
                        broken += 1
            for m in PATH.finditer(line):
                p = m.group(1).rstrip('.,;:)')
                if '...' in p or p.endswith('/NAME') or not p:
                    continue
                if not path_exists(p):
                    print(f'{rel}:{n}: path not found: {p}')
                    broken += 1
    print(f'{len(files)} files checked, {broken} broken reference(s)')
    return 1 if broken else 0


if __name__ == '__main__':
    sys.exit(main())
