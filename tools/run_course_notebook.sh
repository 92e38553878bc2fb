#!/usr/bin/env bash
# Runs one of the daseCV course's notebooks (assignment 2) on dasecv.course and
# prints every code cell's text output under the first line of its source, so
# that a person can hold the printed errors against the course's comments.
#
#   tools/run_course_notebook.sh NOTEBOOK.ipynb [OUT.ipynb]
#
# The notebook is copied to a temporary directory (with a notebook_images/
# folder that lies beside it, which ConvolutionalNetworks reads) and only its
# import lines change: `from daseCV...` / `import daseCV...` become
# `dasecv.course...`. It runs under /usr/bin/python3's ipykernel with
# PYTHONPATH at the build tree ($DASECV_BUILD, default build/); a cell that
# raises does not stop the others. OUT.ipynb, when given, receives the executed
# notebook. Needs jupyter-nbconvert and python3-ipykernel (python3-imageio for
# ConvolutionalNetworks' picture cell) and $DASECV_CIFAR10_DIR for the cells
# that load CIFAR-10. Exit status: 0 when every cell ran without an error, 1
# when some raised, 2 on bad arguments or a missing tool.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=/usr/bin/python3

usage() { echo "usage: $0 NOTEBOOK.ipynb [OUT.ipynb]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
nb=$1
out=${2:-}
case $nb in *.ipynb) ;; *) echo "$0: $nb: not an .ipynb file" >&2; exit 2 ;; esac
[ -f "$nb" ] || { echo "$0: $nb: no such file" >&2; exit 2; }
if [ -n "$out" ]; then
  case $out in *.ipynb) ;; *) echo "$0: $out: the output must end in .ipynb" >&2; exit 2 ;; esac
  [ -d "$(dirname "$out")" ] || { echo "$0: $(dirname "$out"): no such directory" >&2; exit 2; }
fi
command -v jupyter-nbconvert >/dev/null ||
  { echo "$0: jupyter-nbconvert not found (apt-get install jupyter-nbconvert python3-ipykernel)" >&2; exit 2; }
$py -c 'import ipykernel' 2>/dev/null ||
  { echo "$0: $py has no ipykernel (apt-get install python3-ipykernel)" >&2; exit 2; }
build=${DASECV_BUILD:-$root/build}
[ -f "$build/python/dasecv/__init__.py" ] ||
  { echo "$0: $build/python/dasecv not built (meson setup build && ninja -C build)" >&2; exit 2; }
build=$(cd "$build" && pwd)
[ -n "${DASECV_CIFAR10_DIR:-}" ] ||
  echo "$0: warning: DASECV_CIFAR10_DIR is not set; cells that load CIFAR-10 will fail" >&2

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
name=$(basename "$nb")
src_dir=$(cd "$(dirname "$nb")" && pwd)
[ -d "$src_dir/notebook_images" ] && cp -r "$src_dir/notebook_images" "$tmp/"
# In the .ipynb (JSON) each source line is a string of its own: change only
# the strings that start with an import of daseCV.
sed -E '/^[[:space:]]*"[[:space:]]*(from|import)[[:space:]]+daseCV([. ]|\\n|")/ s/daseCV/dasecv.course/' \
  "$nb" > "$tmp/$name"

# A kernel of our own, so that the kernel is /usr/bin/python3 whatever other
# "python3" kernels the user has.
mkdir -p "$tmp/kernels/dasecv-python3"
cat > "$tmp/kernels/dasecv-python3/kernel.json" <<EOF
{"argv": ["$py", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
 "display_name": "dasecv (/usr/bin/python3)", "language": "python"}
EOF

echo "running $name (cells may take minutes)..." >&2
start=$(date +%s)
rc=0
JUPYTER_PATH="$tmp${JUPYTER_PATH:+:$JUPYTER_PATH}" \
PYTHONPATH="$build/python${PYTHONPATH:+:$PYTHONPATH}" \
MPLBACKEND=Agg \
  jupyter-nbconvert --execute --to notebook --allow-errors \
    --ExecutePreprocessor.kernel_name=dasecv-python3 \
    --ExecutePreprocessor.timeout=1200 \
    --output-dir "$tmp" --output "executed.ipynb" "$tmp/$name" 2>"$tmp/nbconvert.log" || rc=$?
if [ $rc -ne 0 ] || [ ! -f "$tmp/executed.ipynb" ]; then
  echo "$0: jupyter-nbconvert failed (status $rc):" >&2
  tail -n 20 "$tmp/nbconvert.log" >&2
  exit 1
fi
[ -z "$out" ] || cp "$tmp/executed.ipynb" "$out"

$py - "$tmp/executed.ipynb" "$name" "$(( $(date +%s) - start ))" <<'EOF'
import datetime, json, sys

path, name, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
nb = json.load(open(path, encoding='utf-8'))


def seconds_of(cell):
    t = cell.get('metadata', {}).get('execution', {})
    a, b = t.get('iopub.execute_input'), t.get('shell.execute_reply')
    if not a or not b:
        return None
    parse = lambda s: datetime.datetime.fromisoformat(s.rstrip('Z'))
    return (parse(b) - parse(a)).total_seconds()


errors = []
for i, cell in enumerate(nb['cells']):
    if cell['cell_type'] != 'code':
        continue
    src = ''.join(cell['source']).strip().splitlines()
    first = src[0] if src else '(empty)'
    s = seconds_of(cell)
    print('=== [cell %d] %s%s' % (i, first, '' if s is None else '   (%.1f s)' % s))
    for o in cell.get('outputs', []):
        if o['output_type'] == 'stream':
            text = ''.join(o['text'])
        elif o['output_type'] in ('execute_result', 'display_data'):
            text = ''.join(o.get('data', {}).get('text/plain', ''))
            if text.startswith('<Figure'):
                continue
        elif o['output_type'] == 'error':
            text = 'ERROR %s: %s' % (o['ename'], o['evalue'])
            errors.append('[cell %d] %s: %s' % (i, o['ename'], o['evalue'].splitlines()[0] if o['evalue'] else ''))
        else:
            continue
        for line in text.rstrip('\n').splitlines():
            print('    ' + line)
print('--- %s: %d s, %d cell(s) raised' % (name, seconds, len(errors)))
for e in errors:
    print('    ' + e)
sys.exit(1 if errors else 0)
EOF
