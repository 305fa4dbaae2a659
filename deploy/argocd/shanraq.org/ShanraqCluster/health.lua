-- Argo CD health of a ShanraqCluster, from the kstatus-style status the operator writes:
-- .status.observedGeneration and the Ready / Reconciling / Stalled conditions, each carrying
-- its own observedGeneration. A Ready=True written for an older generation is not trusted.
-- Written for Argo CD's Lua 5.1 (gopher-lua) and tested with lua5.4: no 5.3+ syntax.
local hs = {}

local function find_condition(conditions, wanted)
  if conditions == nil then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if condition.type == wanted then
      return condition
    end
  end
  return nil
end

local function text_of(condition, fallback)
  if condition ~= nil then
    if condition.message ~= nil and condition.message ~= "" then
      return condition.message
    end
    if condition.reason ~= nil and condition.reason ~= "" then
      return condition.reason
    end
  end
  return fallback
end

-- PostgreSQL phases of an unplanned failover (shanraq-ha's postgres::Phase): writes are
-- unavailable until Routing ends, and a failover refused for want of a promotable replica
-- stays in Electing. Bootstrapping and the planned Switchover* phases are progress, not damage.
local failover_phases = {
  Detecting = true,
  Fencing = true,
  Electing = true,
  Promoting = true,
  Routing = true,
}

local function failover_phase(phase)
  return phase ~= nil and failover_phases[phase] == true
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local status = obj.status

if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local observed = status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. string.format("%d", generation)
  return hs
end

local conditions = status.conditions
local stalled = find_condition(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = text_of(stalled, "Reconciliation is stalled")
  return hs
end

local ready = find_condition(conditions, "Ready")
local phase = nil
if status.postgres ~= nil then
  phase = status.postgres.phase
end
if ready ~= nil and ready.status == "False" and failover_phase(phase) then
  hs.status = "Degraded"
  hs.message = text_of(ready, "PostgreSQL failover: " .. phase)
  return hs
end

local reconciling = find_condition(conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = text_of(reconciling, "Reconciling")
  return hs
end

if ready ~= nil and ready.status == "True" then
  local current = ready.observedGeneration == nil or generation == nil
    or ready.observedGeneration >= generation
  if current then
    hs.status = "Healthy"
    hs.message = text_of(ready, "Ready")
    return hs
  end
  hs.status = "Progressing"
  hs.message = "Ready was reported for an older generation"
  return hs
end

hs.status = "Progressing"
hs.message = text_of(ready, "Waiting for the Ready condition")
return hs
