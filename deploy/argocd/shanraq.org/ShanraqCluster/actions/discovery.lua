-- Argo CD resource actions of a ShanraqCluster: a planned switchover and a failover drill.
-- Both only set the annotation the operator acts on (shanraq.org/switchover,
-- shanraq.org/drill); the operator checks, acts, removes the annotation and answers with an
-- Event and, for a drill, status.drill. An action is offered disabled when the operator would
-- refuse it anyway. Written for Argo CD's Lua 5.1 (gopher-lua) and tested with lua5.4.
local actions = {}

local function postgres_enabled()
  return obj.spec == nil or obj.spec.postgres == nil or obj.spec.postgres.enabled ~= false
end

local function annotation(name)
  if obj.metadata == nil or obj.metadata.annotations == nil then
    return nil
  end
  return obj.metadata.annotations[name]
end

local function healthy_primary()
  if obj.status == nil or obj.status.postgres == nil then
    return false
  end
  local postgres = obj.status.postgres
  return postgres.phase == "Healthy" and postgres.currentPrimary ~= nil and postgres.currentPrimary ~= ""
end

local function drill_running()
  return obj.status ~= nil and obj.status.drill ~= nil and obj.status.drill.phase == "Running"
end

local ready = postgres_enabled() and healthy_primary()
actions["switchover"] = {
  ["disabled"] = not ready or annotation("shanraq.org/switchover") ~= nil,
}
actions["drill"] = {
  ["disabled"] = not ready or annotation("shanraq.org/drill") ~= nil or drill_running(),
}
return actions
