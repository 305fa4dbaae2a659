//! Objects as Argo CD hands them to its Lua scripts: JSON values written as Lua table
//! constructors, and Lua tables read back as JSON (for the actions, which return the object).

use serde_json::Value;

/// JSON values as Lua literals, the same code the e2e suite's health check runs on live objects.
pub use shanraq_testkit::lua::{lua_literal, lua_string};

/// A Lua function `to_json(value)` that writes a table back as JSON: a table whose keys are
/// exactly 1..n is an array, any other table an object (an empty table is `{}`).
pub const TO_JSON: &str = r#"
local function to_json(value)
  local kind = type(value)
  if kind == "nil" then return "null" end
  if kind == "boolean" then return tostring(value) end
  if kind == "number" then
    if value == math.floor(value) then return string.format("%d", value) end
    return string.format("%.17g", value)
  end
  if kind == "string" then
    return '"' .. value:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
  end
  local count = 0
  for _ in pairs(value) do count = count + 1 end
  local is_array = count > 0
  for i = 1, count do
    if value[i] == nil then is_array = false end
  end
  local parts = {}
  if is_array then
    for i = 1, count do parts[#parts + 1] = to_json(value[i]) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  local keys = {}
  for key in pairs(value) do keys[#keys + 1] = tostring(key) end
  table.sort(keys)
  for _, key in ipairs(keys) do
    parts[#parts + 1] = to_json(key) .. ":" .. to_json(value[key])
  end
  return "{" .. table.concat(parts, ",") .. "}"
end
"#;

/// `value` without nulls and empty objects or arrays, which a Lua table cannot tell apart.
pub fn normalise(value: &Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, field)| (key.clone(), normalise(field)))
                .filter(|(_, field)| !is_empty(field))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalise).collect()),
        other => other.clone(),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(fields) => fields.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}
