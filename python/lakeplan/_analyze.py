"""Static analyzer of lakeplan / Bauplan pipeline files (docs/pipelines-internals.md, section 1).

Reads ``{"files": [...]}`` as JSON on stdin and writes one JSON document on stdout describing the
decorated functions, their inputs, the ``TableSchema`` classes and the problems of each file.

User code is parsed with :mod:`ast` and never imported or executed. Standard library only, Python >= 3.9.
"""

import ast
import hashlib
import json
import sys

LIBRARIES = ("bauplan", "lakeplan")

DECORATORS = ("model", "expectation", "python", "resources", "extras")
INPUT_MARKERS = ("Model", "Parameter")
FIELD_TYPES = (
    "Any",
    "Bool",
    "Int32",
    "Int64",
    "Float64",
    "String",
    "Binary",
    "Date32",
    "Date64",
    "TimestampMicro",
    "TimestampNano",
    "TimestampMicroUTC",
    "TimestampNanoUTC",
)
SCHEMA_NAMES = ("TableSchema", "TableField")
KNOWN = set(DECORATORS) | set(INPUT_MARKERS) | set(FIELD_TYPES) | set(SCHEMA_NAMES)

MODEL_KWARGS = (
    "name",
    "columns",
    "partitioned_by",
    "materialization_strategy",
    "cache_strategy",
    "overwrite_filter",
    "internet_access",
)
PYTHON_KWARGS = ("version", "pip")
RESOURCES_KWARGS = ("cpus", "memory", "memory_swap", "timeout")
INPUT_MODEL_KWARGS = ("name", "columns", "projection_schema", "filter", "ref")

# The modules of the authoring libraries that a pipeline function can import (the sandbox's
# copy: crates/lake/src/pysrc.rs) and their public names; tests/python/test_store.py checks
# this table against the packages themselves. Private modules (`_worker`...) are not checked.
_STANDARD_EXPECTATIONS = (
    "expect_column_accepted_values",
    "expect_column_all_null",
    "expect_column_all_unique",
    "expect_column_equal_concatenation",
    "expect_column_mean_greater_or_equal_than",
    "expect_column_mean_greater_than",
    "expect_column_mean_smaller_or_equal_than",
    "expect_column_mean_smaller_than",
    "expect_column_no_nulls",
    "expect_column_not_unique",
    "expect_column_some_null",
)
_STORE = (
    "save_obj",
    "load_obj",
    "StoreError",
    "StoreNotAvailableError",
    "UserObjectKeyNotExistsError",
    "UserObjectWithKeyExistsError",
    "ObjectCannotBeSerializedError",
    "ObjectTooBigError",
)
# `__all__` plus what is loaded on first use (the client side: outside the sandbox only).
_TOP = tuple(sorted(KNOWN | {"FieldType"})) + ("standard_expectations", "store", "__version__")
LIBRARY_MODULES = {
    "bauplan": _TOP + ("Client", "exceptions", "schema", "state"),
    "lakeplan": _TOP + ("Client", "client", "exceptions", "LakeplanError", "records"),
    "bauplan.standard_expectations": _STANDARD_EXPECTATIONS,
    "lakeplan.standard_expectations": _STANDARD_EXPECTATIONS,
    "bauplan.store": _STORE,
    "lakeplan.store": _STORE,
    # The client's modules (scripts that drive runs import them): their names are not checked.
    "bauplan.exceptions": None,
    "bauplan.schema": None,
    "bauplan.state": None,
    "lakeplan.client": None,
    "lakeplan.exceptions": None,
    "lakeplan.records": None,
}


class _NotLiteral(Exception):
    pass


class Names:
    """What the module's imports make of a name: library symbols, library modules, typing names."""

    def __init__(self, tree):
        self.modules = set()  # local names bound to a library module (bauplan, lakeplan, aliases)
        self.symbols = {}  # local name -> library symbol (from bauplan import model as m)
        self.shadowed = set()  # local names imported from some other module
        self.star = False
        self.libraries = set()  # the libraries the module imports at top level (bauplan, lakeplan)
        for node in tree.body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    root = alias.name.split(".")[0]
                    if root in LIBRARIES:
                        self.libraries.add(root)
                    if alias.name in LIBRARIES:
                        self.modules.add(alias.asname or alias.name)
                    elif alias.asname is None and root in LIBRARIES:
                        self.modules.add(root)
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level == 0 and module.split(".")[0] in LIBRARIES:
                    self.libraries.add(module.split(".")[0])
                if node.level == 0 and module in LIBRARIES:
                    for alias in node.names:
                        if alias.name == "*":
                            self.star = True
                        else:
                            self.symbols[alias.asname or alias.name] = alias.name
                else:
                    for alias in node.names:
                        self.shadowed.add(alias.asname or alias.name)

    def resolve(self, expr):
        """The library symbol an expression names (``"model"``, ``"Model"``...), else None."""
        if isinstance(expr, ast.Call):
            expr = expr.func
        if isinstance(expr, ast.Name):
            if expr.id in self.symbols:
                return self.symbols[expr.id]
            if expr.id in KNOWN and expr.id not in self.shadowed:
                return expr.id
            return None
        if isinstance(expr, ast.Attribute):
            base = expr.value
            if isinstance(base, ast.Name) and base.id in self.modules:
                return expr.attr
            # bauplan.sdk.Model, lakeplan.types.Int64 ...
            root = base
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in self.modules:
                return expr.attr
        return None


def _is_annotated(expr):
    if isinstance(expr, ast.Name):
        return expr.id == "Annotated"
    if isinstance(expr, ast.Attribute):
        return expr.attr == "Annotated"
    return False


def _annotated_parts(ann):
    """``Annotated[T, m1, m2]`` -> (T, [m1, m2]); anything else -> None."""
    if isinstance(ann, ast.Subscript) and _is_annotated(ann.value):
        sl = ann.slice
        if sys.version_info < (3, 9) and isinstance(sl, ast.Index):  # pragma: no cover
            sl = sl.value
        if isinstance(sl, ast.Tuple) and sl.elts:
            return sl.elts[0], list(sl.elts[1:])
    return None


def _literal(node):
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise _NotLiteral()


def _name_of(expr):
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        return expr.attr
    return None


class FileAnalysis:
    def __init__(self, path, source):
        self.path = path
        self.source = source
        self.problems = []
        self.functions = []
        self.schemas = {}

    def problem(self, line, message):
        self.problems.append({"line": line, "message": message})

    def run(self):
        tree = ast.parse(self.source, filename=self.path)
        self.names = Names(tree)
        self.tree = tree
        self.check_library_imports(tree)
        self.collect_schemas(tree)
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                fn = self.function(node)
                if fn is not None:
                    self.functions.append(fn)
        self.problems.sort(key=lambda p: p["line"])

    # -- imports -----------------------------------------------------------------------------

    def check_library_imports(self, tree):
        """Every import of a `bauplan.*`/`lakeplan.*` module, or of a name from one, anywhere in
        the file (imports inside functions too): the module and the name must exist."""
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self.check_module(node.lineno, alias.name)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if not self.check_module(node.lineno, node.module):
                    continue
                names = LIBRARY_MODULES.get(node.module)
                if names is None:
                    continue
                for alias in node.names:
                    submodule = "%s.%s" % (node.module, alias.name)
                    if alias.name == "*" or alias.name in names or submodule in LIBRARY_MODULES:
                        continue
                    self.problem(
                        node.lineno,
                        "'%s' is not in module '%s' (known: %s)"
                        % (alias.name, node.module, ", ".join(_closest_first(alias.name, _public(names)))),
                    )

    def check_module(self, line, module):
        """Whether `module` is not a library module or is one that exists (else a problem)."""
        parts = module.split(".")
        if parts[0] not in LIBRARIES or module in LIBRARY_MODULES:
            return True
        if len(parts) == 2 and parts[1].startswith("_"):
            return True  # the libraries' private modules: not checked
        known = _closest_first(module, [m for m in LIBRARY_MODULES if m.startswith(parts[0] + ".")])
        self.problem(line, "module '%s' does not exist (known: %s)" % (module, ", ".join(known)))
        return False

    # -- schemas -----------------------------------------------------------------------------

    def collect_schemas(self, tree):
        classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
        # A class is a schema when a base is TableSchema or another schema of this file.
        pending = list(classes)
        changed = True
        while changed:
            changed = False
            for cls in list(pending):
                bases = [self.names.resolve(b) or _name_of(b) for b in cls.bases]
                is_schema = any(
                    self.names.resolve(b) == "TableSchema" for b in cls.bases
                ) or any(b in self.schemas for b in bases if b)
                if is_schema:
                    fields = []
                    for b in cls.bases:
                        bn = _name_of(b)
                        if bn in self.schemas and self.names.resolve(b) != "TableSchema":
                            fields.extend(dict(f) for f in self.schemas[bn]["fields"])
                    self.schemas[cls.name] = {"line": cls.lineno, "fields": fields}
                    for f in self.schema_fields(cls):
                        fields[:] = [x for x in fields if x["name"] != f["name"]]
                        fields.append(f)
                    pending.remove(cls)
                    changed = True

    def schema_fields(self, cls):
        out = []
        for stmt in cls.body:
            if not isinstance(stmt, ast.AnnAssign) or not isinstance(stmt.target, ast.Name):
                continue
            attr = stmt.target.id
            ann = stmt.annotation
            meta = []
            parts = _annotated_parts(ann)
            if parts is not None:
                ann, meta = parts
            if stmt.value is not None:
                meta.append(stmt.value)
            type_name, nullable = self.field_type(ann)
            if type_name is None:
                self.problem(
                    stmt.lineno,
                    "column '%s' of schema '%s' has an unknown type '%s' (expected one of %s, or X | None)"
                    % (attr, cls.name, ast.unparse(stmt.annotation) if hasattr(ast, "unparse") else "?",
                       ", ".join(FIELD_TYPES)),
                )
                continue
            name, doc = attr, None
            for m in meta:
                if isinstance(m, ast.Call) and self.names.resolve(m) == "TableField":
                    for kw in m.keywords:
                        if kw.arg in ("name", "doc"):
                            try:
                                value = _literal(kw.value)
                            except _NotLiteral:
                                self.problem(kw.value.lineno, "TableField(%s=...) must be a literal" % kw.arg)
                                continue
                            if kw.arg == "name" and isinstance(value, str):
                                name = value
                            elif kw.arg == "doc" and isinstance(value, str):
                                doc = value
            out.append({"name": name, "type": type_name, "nullable": nullable, "doc": doc})
        return out

    def field_type(self, ann):
        """(type name, nullable) of a field annotation; (None, _) when not a field type."""
        members = []

        def flatten(e):
            if isinstance(e, ast.BinOp) and isinstance(e.op, ast.BitOr):
                flatten(e.left)
                flatten(e.right)
            elif isinstance(e, ast.Subscript) and _name_of(e.value) in ("Optional", "Union"):
                sl = e.slice
                if isinstance(sl, ast.Tuple):
                    for x in sl.elts:
                        flatten(x)
                else:
                    flatten(sl)
                if _name_of(e.value) == "Optional":
                    members.append(None)
            else:
                members.append(e)

        flatten(ann)
        nullable = False
        types = []
        for m in members:
            if m is None or (isinstance(m, ast.Constant) and m.value is None):
                nullable = True
                continue
            resolved = self.names.resolve(m)
            if resolved not in FIELD_TYPES:
                return None, False
            types.append(resolved)
        if len(types) != 1:
            return None, False
        return types[0], nullable

    # -- functions ---------------------------------------------------------------------------

    def call_kwargs(self, call, allowed, positional, what, line):
        """Literal arguments of a decorator/marker call as a dict (non-literals are problems)."""
        out = {}
        if not isinstance(call, ast.Call):
            return out
        for i, arg in enumerate(call.args):
            if isinstance(arg, ast.Starred) or i >= len(positional):
                self.problem(arg.lineno, "too many positional arguments to %s" % what)
                continue
            try:
                out[positional[i]] = _literal(arg)
            except _NotLiteral:
                self.problem(arg.lineno, "argument %d of %s must be a literal" % (i + 1, what))
        for kw in call.keywords:
            if kw.arg is None:
                self.problem(kw.value.lineno, "%s does not accept **kwargs" % what)
                continue
            if kw.arg not in allowed:
                self.problem(kw.value.lineno, "unknown argument '%s' of %s" % (kw.arg, what))
                continue
            try:
                out[kw.arg] = _literal(kw.value)
            except _NotLiteral:
                self.problem(kw.value.lineno, "argument '%s' of %s must be a literal" % (kw.arg, what))
        return out

    def function(self, node):
        found = {}
        for dec in node.decorator_list:
            sym = self.names.resolve(dec)
            if sym not in DECORATORS:
                continue
            if sym in found:
                self.problem(dec.lineno, "function '%s' has two @%s decorators" % (node.name, sym))
                continue
            found[sym] = dec
        kind = None
        if "model" in found and "expectation" in found:
            self.problem(node.lineno, "function '%s' has both @model and @expectation" % node.name)
            return None
        if "model" in found:
            kind = "model"
        elif "expectation" in found:
            kind = "expectation"
        else:
            others = [d for d in ("python", "resources", "extras") if d in found]
            if others:
                self.problem(
                    node.lineno,
                    "function '%s' has @%s but neither @model nor @expectation" % (node.name, others[0]),
                )
            return None

        model = None
        if kind == "model":
            dec = found["model"]
            args = self.call_kwargs(dec, MODEL_KWARGS, ("name",), "@model", dec.lineno)
            model = {k: args.get(k) for k in MODEL_KWARGS}
            self.check_model_kwargs(model, dec.lineno, node.name)
        elif isinstance(found["expectation"], ast.Call):
            dec = found["expectation"]
            if dec.args:
                self.problem(dec.lineno, "@expectation takes no positional arguments")

        python = None
        if "python" in found:
            dec = found["python"]
            args = self.call_kwargs(dec, PYTHON_KWARGS, PYTHON_KWARGS, "@python", dec.lineno)
            version = args.get("version")
            if version is not None and not isinstance(version, (str, int, float)):
                self.problem(dec.lineno, "@python version must be a string like '3.11'")
                version = None
            pip = args.get("pip")
            if pip is not None:
                if not isinstance(pip, dict) or not all(isinstance(k, str) for k in pip):
                    self.problem(dec.lineno, "@python pip must be a dict like {'polars': '1.37'}")
                    pip = None
                else:
                    pip = {k: ("" if v is None else str(v)) for k, v in pip.items()}
            python = {"version": None if version is None else str(version), "pip": pip}

        resources = None
        if "resources" in found:
            dec = found["resources"]
            args = self.call_kwargs(dec, RESOURCES_KWARGS, RESOURCES_KWARGS, "@resources", dec.lineno)
            resources = {"cpus": args.get("cpus"), "memory": args.get("memory"), "timeout": args.get("timeout")}

        inputs = self.inputs(node)

        output_schema = None
        if node.returns is not None:
            parts = _annotated_parts(node.returns)
            if parts is not None:
                for m in parts[1]:
                    name = _name_of(m)
                    if name is None:
                        continue
                    if name in self.schemas:
                        output_schema = name
                    elif self.names.resolve(m) is None:
                        self.problem(
                            node.returns.lineno,
                            "output schema '%s' of '%s' is not a TableSchema class of this file" % (name, node.name),
                        )

        return {
            "name": node.name,
            "line": node.lineno,
            "kind": kind,
            "model": model,
            "python": python,
            "resources": resources,
            "inputs": inputs,
            "output_schema": output_schema,
            "code_hash": self.code_hash(node),
        }

    def check_model_kwargs(self, model, line, fname):
        if model["name"] is not None and not isinstance(model["name"], str):
            self.problem(line, "@model name of '%s' must be a string" % fname)
            model["name"] = None
        cols = model["columns"]
        if cols is not None and (not isinstance(cols, (list, tuple)) or not all(isinstance(c, str) for c in cols)):
            self.problem(line, "@model columns of '%s' must be a list of strings" % fname)
            model["columns"] = None
        elif cols is not None:
            model["columns"] = list(cols)
        part = model["partitioned_by"]
        if isinstance(part, str):
            model["partitioned_by"] = [part]
        elif isinstance(part, (list, tuple)) and all(isinstance(c, str) for c in part):
            model["partitioned_by"] = list(part)
        elif part is not None:
            self.problem(line, "@model partitioned_by of '%s' must be a string or a list of strings" % fname)
            model["partitioned_by"] = None
        for key in ("materialization_strategy", "cache_strategy", "overwrite_filter"):
            if model[key] is not None and not isinstance(model[key], str):
                self.problem(line, "@model %s of '%s' must be a string" % (key, fname))
                model[key] = None
        if model["internet_access"] is not None and not isinstance(model["internet_access"], bool):
            self.problem(line, "@model internet_access of '%s' must be True or False" % fname)
            model["internet_access"] = None

    def inputs(self, node):
        a = node.args
        out = []
        if a.vararg is not None:
            self.problem(a.vararg.lineno, "'%s' cannot take *%s" % (node.name, a.vararg.arg))
        if a.kwarg is not None:
            self.problem(a.kwarg.lineno, "'%s' cannot take **%s" % (node.name, a.kwarg.arg))
        positional = list(getattr(a, "posonlyargs", [])) + list(a.args)
        defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
        pairs = list(zip(positional, defaults)) + list(zip(a.kwonlyargs, a.kw_defaults))
        for arg, default in pairs:
            marker = None
            if arg.annotation is not None:
                parts = _annotated_parts(arg.annotation)
                if parts is not None:
                    for m in parts[1]:
                        if isinstance(m, ast.Call) and self.names.resolve(m) in INPUT_MARKERS:
                            marker = m
                            break
            if marker is None and isinstance(default, ast.Call) and self.names.resolve(default) in INPUT_MARKERS:
                marker = default
            if marker is None:
                self.problem(
                    arg.lineno,
                    "parameter '%s' of '%s' has no Model(...) or Parameter(...)" % (arg.arg, node.name),
                )
                continue
            item = self.input(arg, marker)
            if item is not None:
                out.append(item)
        return out

    def input(self, arg, call):
        sym = self.names.resolve(call)
        line = arg.lineno
        if sym == "Parameter":
            args = self.call_kwargs(call, ("param_name", "name"), ("param_name",), "Parameter(...)", call.lineno)
            name = args.get("param_name", args.get("name"))
            if not isinstance(name, str) or not name:
                self.problem(call.lineno, "Parameter(...) of '%s' needs the parameter's name as a string" % arg.arg)
                return None
            return {"param": arg.arg, "line": line, "kind": "parameter", "name": name}

        # Model(...): projection_schema is a class name, not a literal.
        schema = None
        literal_call = ast.Call(func=call.func, args=list(call.args), keywords=[])
        for kw in call.keywords:
            if kw.arg == "projection_schema":
                schema = _name_of(kw.value)
                if schema is None:
                    self.problem(kw.value.lineno, "projection_schema of '%s' must name a TableSchema class" % arg.arg)
            elif kw.arg in ("connector", "connector_config_key", "connector_config_uri"):
                self.problem(kw.value.lineno, "Model(%s=...) is not supported by lakeplan" % kw.arg)
            else:
                literal_call.keywords.append(kw)
        args = self.call_kwargs(literal_call, INPUT_MODEL_KWARGS, ("name",), "Model(...)", call.lineno)
        name = args.get("name")
        if not isinstance(name, str) or not name:
            self.problem(call.lineno, "Model(...) of '%s' needs a table or model name as a string" % arg.arg)
            return None
        columns = args.get("columns")
        if columns is not None:
            if not isinstance(columns, (list, tuple)) or not all(isinstance(c, str) for c in columns):
                self.problem(call.lineno, "columns of '%s' must be a list of strings" % arg.arg)
                columns = None
            else:
                columns = list(columns)
        if schema is not None:
            if schema not in self.schemas:
                self.problem(
                    call.lineno,
                    "projection_schema '%s' of '%s' is not a TableSchema class of this file" % (schema, arg.arg),
                )
            elif columns is not None:
                self.problem(call.lineno, "'%s' gives both columns and projection_schema; use one" % arg.arg)
            else:
                columns = [f["name"] for f in self.schemas[schema]["fields"]]
        flt = args.get("filter")
        if flt is not None and not isinstance(flt, str):
            self.problem(call.lineno, "filter of '%s' must be a string" % arg.arg)
            flt = None
        ref = args.get("ref")
        if ref is not None and not isinstance(ref, str):
            self.problem(call.lineno, "ref of '%s' must be a string" % arg.arg)
            ref = None
        return {
            "param": arg.arg,
            "line": line,
            "kind": "model",
            "name": name,
            "columns": columns,
            "projection_schema": schema,
            "filter": flt,
            "ref": ref,
        }

    # -- code hash ---------------------------------------------------------------------------

    def code_hash(self, node):
        if not hasattr(self, "_defs"):
            self._defs = {}
            self._imports = []
            for i, stmt in enumerate(self.tree.body):
                if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                    self._imports.append(stmt)
                for name in _bound_names(stmt):
                    self._defs.setdefault(name, []).append(i)
        seen = set()
        todo = [node]
        indexes = set()
        while todo:
            current = todo.pop()
            for sub in ast.walk(current):
                if isinstance(sub, ast.Name) and sub.id not in seen:
                    seen.add(sub.id)
                    for i in self._defs.get(sub.id, ()):
                        stmt = self.tree.body[i]
                        if stmt is node or isinstance(stmt, (ast.Import, ast.ImportFrom)):
                            continue
                        if i not in indexes:
                            indexes.add(i)
                            todo.append(stmt)
        h = hashlib.sha256()
        h.update(ast.dump(node, include_attributes=False).encode())
        for stmt in self._imports:
            h.update(b"\0import\0")
            h.update(ast.dump(stmt, include_attributes=False).encode())
        for i in sorted(indexes):
            h.update(b"\0def\0")
            h.update(ast.dump(self.tree.body[i], include_attributes=False).encode())
        return h.hexdigest()


def _public(names):
    return sorted(n for n in names if not n.startswith("_"))


def _closest_first(name, candidates):
    """`candidates`, the most similar to `name` first (a typo's fix leads the list)."""
    import difflib

    return difflib.get_close_matches(name, sorted(candidates), n=len(candidates), cutoff=0)


def _bound_names(stmt):
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [stmt.name]
    targets = []
    if isinstance(stmt, ast.Assign):
        targets = stmt.targets
    elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
        targets = [stmt.target]
    out = []
    for t in targets:
        for sub in ast.walk(t):
            if isinstance(sub, ast.Name):
                out.append(sub.id)
    return out


def analyze_file(path):
    result = {"path": path, "error": None, "functions": [], "schemas": {}, "problems": []}
    try:
        with open(path, "rb") as f:
            raw = f.read()
        source = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        result["error"] = {"line": 1, "col": 1, "message": "cannot read the file: %s" % e}
        return result
    analysis = FileAnalysis(path, source)
    try:
        analysis.run()
    except SyntaxError as e:
        result["error"] = {"line": e.lineno or 1, "col": e.offset or 1, "message": e.msg or "invalid syntax"}
        return result
    except (ValueError, RecursionError, MemoryError) as e:
        result["error"] = {"line": 1, "col": 1, "message": "cannot parse the file: %s" % e}
        return result
    result["functions"] = analysis.functions
    result["schemas"] = analysis.schemas
    result["problems"] = analysis.problems
    result["libraries"] = sorted(analysis.names.libraries)
    return result


def main():
    request = json.load(sys.stdin)
    files = request.get("files", [])
    out = {"files": [analyze_file(p) for p in files]}
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
