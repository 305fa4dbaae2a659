//! Argo CD's Lua health checks run by a real Lua 5.4, the way Argo CD runs them: the object is
//! the global `obj` table and the script returns `{status, message}`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::TestkitError;

/// A Lua string literal holding `text` exactly: every byte outside a safe set is escaped as
/// `\ddd`, so quotes, backslashes, newlines and UTF-8 all survive.
pub fn lua_string(text: &str) -> String {
    let mut literal = String::from("\"");
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b" .,:;-_/()[]{}<>=+*%#@!?'^~|&$".contains(&byte) {
            literal.push(char::from(byte));
        } else {
            let _ = write!(literal, "\\{byte:03}");
        }
    }
    literal.push('"');
    literal
}

/// A Lua table constructor for a JSON value, as Argo CD hands objects to its scripts.
pub fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => lua_string(text),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(lua_literal).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .filter(|(_, field)| !field.is_null())
                .map(|(key, field)| format!("[{}] = {}", lua_string(key), lua_literal(field)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

/// `(status, message)` of the health script at `script` for `object`.
pub fn argocd_health(script: &Path, object: &Value) -> Result<(String, String), TestkitError> {
    let chunk = format!(
        "obj = {}\n\
         local hs = dofile({})\n\
         assert(type(hs) == 'table', 'the health script returned ' .. type(hs))\n\
         io.write(tostring(hs.status), '\\0', tostring(hs.message))\n",
        lua_literal(object),
        lua_string(&script.to_string_lossy()),
    );
    let lua = crate::binaries::lua()?;
    let mut child = Command::new(&lua)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| TestkitError::io("spawning lua5.4", error))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(chunk.as_bytes())
            .map_err(|error| TestkitError::io("feeding lua5.4", error))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|error| TestkitError::io("running lua5.4", error))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(TestkitError::CommandFailed {
            command: format!("lua5.4 on {}", script.display()),
            status: output.status.to_string(),
            output: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let (status, message) = stdout
        .split_once('\0')
        .ok_or_else(|| TestkitError::CommandFailed {
            command: format!("lua5.4 on {}", script.display()),
            status: "unexpected output".to_string(),
            output: stdout.clone(),
        })?;
    Ok((status.to_string(), message.to_string()))
}
