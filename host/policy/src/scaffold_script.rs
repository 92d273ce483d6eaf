//! `policy new NAME --lang rust|python|javascript`: for Python and JavaScript a policy directory with the SDK's `Policy`
//! class (every default), an entry module that exports it, a native unit test (pytest or
//! `node --test`) that also runs the fixture files, a fixture file, `policy.toml` for
//! `policy build`, and a README.

use std::path::{Path, PathBuf};

use super::lang::Language;
use super::scaffold::{self, Created, relative, type_name, validate_name};

/// Creates policy `name` in `dir/name` in language `lang`; `sdk_path` overrides where the
/// language's SDK is found (see [`scaffold::create`]).
pub fn create(
    lang: Language,
    name: &str,
    dir: &Path,
    sdk_path: Option<&Path>,
) -> Result<Created, String> {
    if lang == Language::Rust {
        return scaffold::create(name, dir, sdk_path);
    }
    validate_name(name)?;
    let policy_dir = dir.join(name);
    if policy_dir.exists() {
        return Err(format!("{} already exists", policy_dir.display()));
    }
    std::fs::create_dir_all(&policy_dir).map_err(|e| format!("{}: {e}", policy_dir.display()))?;
    let policy_dir = policy_dir.canonicalize().map_err(|e| e.to_string())?;
    write(lang, name, &policy_dir, sdk_path)
}

/// Writes the files of a Python or JavaScript policy into `policy_dir` (already created,
/// absolute); `sdk` overrides where the language's SDK is found.
fn write(
    lang: Language,
    name: &str,
    policy_dir: &Path,
    sdk: Option<&Path>,
) -> Result<Created, String> {
    let class = type_name(name);
    let sdk = find_sdk(lang, policy_dir, sdk)?;
    let sdk_rel = relative(policy_dir, &sdk).display().to_string();
    let module = name.replace('-', "_");
    let files: Vec<(String, String)> = match lang {
        Language::Python => vec![
            (
                "policy.toml".into(),
                format!(
                    "# How `ecs-provisioner policy build` builds this policy.\nname = \"{name}\"\nlanguage = \"python\"\nentry = \"app\"\n# The Python SDK (the directory holding ecs_policy/), relative to this file.\nsdk = \"{sdk_rel}/src\"\n"
                ),
            ),
            (
                format!("{module}.py"),
                PY_POLICY.replace("{name}", name).replace("{Class}", &class),
            ),
            (
                "app.py".into(),
                PY_APP
                    .replace("{module}", &module)
                    .replace("{Class}", &class),
            ),
            ("tests/conftest.py".into(), PY_CONFTEST.to_owned()),
            (
                "tests/test_policy.py".into(),
                PY_TEST
                    .replace("{module}", &module)
                    .replace("{Class}", &class),
            ),
            (
                ".gitignore".into(),
                "build/\n__pycache__/\n.pytest_cache/\n".into(),
            ),
            ("README.md".into(), PY_README.replace("{name}", name)),
        ],
        Language::Javascript => vec![
            (
                "policy.toml".into(),
                format!(
                    "# How `ecs-provisioner policy build` builds this policy.\nname = \"{name}\"\nlanguage = \"javascript\"\nentry = \"component.js\"\n"
                ),
            ),
            (
                "package.json".into(),
                JS_PACKAGE
                    .replace("{name}", name)
                    .replace("{sdk}", &sdk_rel),
            ),
            (
                format!("src/{name}.js"),
                JS_POLICY.replace("{name}", name).replace("{Class}", &class),
            ),
            (
                "component.js".into(),
                JS_COMPONENT
                    .replace("{name}", name)
                    .replace("{Class}", &class),
            ),
            (
                "test/policy.test.js".into(),
                JS_TEST.replace("{name}", name).replace("{Class}", &class),
            ),
            (".gitignore".into(), "build/\nnode_modules/\n".into()),
            ("README.md".into(), JS_README.replace("{name}", name)),
        ],
        Language::Rust => return Err("a Rust policy is scaffolded by scaffold::create".into()),
    };
    for (file, text) in files.into_iter().chain([(
        "fixtures/basic.toml".to_owned(),
        super::scaffold::FIXTURE.to_owned(),
    )]) {
        let path = policy_dir.join(&file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(Created {
        dir: policy_dir.to_owned(),
        name: name.to_owned(),
        in_workspace: false,
        language: lang,
    })
}

/// The SDK directory (`guest-sdk/python` or `guest-sdk/js`): `given`, else the one of an
/// ecs-provisioner checkout above `dir`.
fn find_sdk(lang: Language, dir: &Path, given: Option<&Path>) -> Result<PathBuf, String> {
    let (sub, marker) = match lang {
        Language::Python => ("guest-sdk/python", "src/ecs_policy/__init__.py"),
        _ => ("guest-sdk/js", "src/component.js"),
    };
    let sdk = match given {
        Some(p) => p
            .canonicalize()
            .map_err(|e| format!("--sdk-path {}: {e}", p.display()))?,
        None => dir
            .ancestors()
            .map(|a| a.join(sub))
            .find(|p| p.join(marker).exists())
            .ok_or_else(|| {
                format!(
                    "no ecs-provisioner checkout above {}: pass --sdk-path <checkout>/{sub}",
                    dir.display()
                )
            })?,
    };
    if sdk.join(marker).exists() {
        Ok(sdk)
    } else {
        Err(format!(
            "--sdk-path {}: not the {sub} SDK (no {marker})",
            sdk.display()
        ))
    }
}

const PY_POLICY: &str = r#""""{name}: a placement and scaling policy for ecs-provisioner.

Every method of `Policy` has a default (demand-driven `scale`, zone-spreading `place`, a
`configure` that takes no settings): override the ones you want to change, and call
`ecs_policy.defaults` to adjust rather than rewrite.
"""

from ecs_policy import Policy


class {Class}(Policy):
    """The policy. Override `configure` (with `ecs_policy.settings`) to take settings."""

    # The parts of the snapshot `scale` reads; the host sends only these (turning records
    # into Python objects is most of a Python policy's cost). Add "offerings" or
    # "queued-items" when your `scale` reads them; a part left out raises when used.
    reads = ("nodes",)
"#;

const PY_APP: &str = r#""""The component's entry module: `ecs-provisioner policy build` starts from it."""

from ecs_policy.component import export

from {module} import {Class}

Policy = export({Class})
"#;

const PY_CONFTEST: &str = r#"import os
import sys
import tomllib

# The policy's modules, and the SDK that policy.toml names.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, "policy.toml"), "rb") as f:
    SDK = tomllib.load(f).get("sdk")
sys.path.insert(0, ROOT)
if SDK:
    sys.path.insert(0, os.path.join(ROOT, SDK))
"#;

const PY_TEST: &str = r#""""Native tests: `python -m pytest` (no wasm needed)."""

import os

import pytest

from ecs_policy import testing
from {module} import {Class}

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
CASES = testing.cases(FIXTURES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fixture(case):
    testing.check({Class}, case)


def test_launches_for_queued_builds():
    snapshot = testing.snapshot({"templates": [{"name": "linux", "max-nodes": 10}],
                                 "demand": [{"template": "linux", "queued": 3}]})
    policy = {Class}()
    policy.configure("{}")
    plan = policy.scale(snapshot)
    assert any(l.template == "linux" and l.count > 0 for l in plan.launches), plan
"#;

const PY_README: &str = r#"# {name}

A placement and scaling policy for ecs-provisioner in Python, built into a WebAssembly
component by componentize-py.

```sh
python -m pytest                                   # native unit tests and fixtures
ecs-provisioner policy build                       # build/{name}.wasm, compiled for this host
ecs-provisioner policy test build/{name}.wasm fixtures/
```

`policy build` needs componentize-py (`ECSP_COMPONENTIZE_PY`, or on PATH; the provisioner's
`scripts/setup-test-deps.sh` installs the pinned version).
"#;

const JS_PACKAGE: &str = r#"{
  "name": "{name}",
  "private": true,
  "type": "module",
  "scripts": { "test": "node --test test/" },
  "dependencies": { "ecs-policy-sdk": "file:{sdk}" }
}
"#;

const JS_POLICY: &str = r#"// {name}: a placement and scaling policy for ecs-provisioner.
//
// Every method of `Policy` has a default (demand-driven `scale`, zone-spreading `place`, a
// `configure` that takes no settings): override the ones you want to change, and call
// `defaults` to adjust rather than rewrite.

import { Policy } from 'ecs-policy-sdk';

/** The policy. Override `configure` (with `settings`) to take settings. */
export class {Class} extends Policy {
  // The parts of the snapshot `scale` reads; the host sends only these (turning records into
  // JavaScript objects is most of a JavaScript policy's cost). Add 'offerings' or
  // 'queued-items' when your `scale` reads them; a part left out throws when used.
  reads = ['nodes'];
}
"#;

const JS_COMPONENT: &str = r#"// The component's entry module: `ecs-provisioner policy build` bundles it.
import { log, declareReads } from 'ecs-provisioner:policy/host@0.2.0';
import { exportPolicy } from 'ecs-policy-sdk/component';
import { {Class} } from './src/{name}.js';

export const policy = exportPolicy({Class}, { log, declareReads });
"#;

const JS_TEST: &str = r#"// Native tests: `npm install` once, then `node --test test/` (no wasm needed).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as testing from 'ecs-policy-sdk/testing';
import { {Class} } from '../src/{name}.js';

const fixtures = fileURLToPath(new URL('../fixtures', import.meta.url));
for (const c of testing.cases(fixtures)) test(c.id, () => testing.check({Class}, c));

test('launches for queued builds', () => {
  const snapshot = testing.snapshot({ templates: [{ name: 'linux', 'max-nodes': 10 }], demand: [{ template: 'linux', queued: 3 }] });
  const policy = new {Class}();
  policy.configure('{}');
  const plan = policy.scale(snapshot);
  assert.ok(plan.launches.some((l) => l.template === 'linux' && l.count > 0), JSON.stringify(plan));
});
"#;

const JS_README: &str = r#"# {name}

A placement and scaling policy for ecs-provisioner in JavaScript, bundled by esbuild and built
into a WebAssembly component by componentize-js.

```sh
npm install                                        # links the SDK named in package.json
node --test test/                                  # native unit tests and fixtures
ecs-provisioner policy build                       # build/{name}.wasm, compiled for this host
ecs-provisioner policy test build/{name}.wasm fixtures/
```

The fixture harness reads TOML with smol-toml and `policy build` runs esbuild and
componentize-js, all from `ECSP_NODE_MODULES` (the provisioner's
`scripts/setup-test-deps.sh` installs the pinned versions and prints it).
"#;
