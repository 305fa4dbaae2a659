-- Argo CD health of a ShanraqBackup, from the status the operator writes: .status.phase
-- (Running, Completed or Failed) and the Succeeded condition, whose message is the operator's
-- or pgBackRest's own word (a failed backup's error, a completed one's label). A backup is
-- carried out once: Completed and Failed are final.
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

local function text_of(status, condition, fallback)
  if condition ~= nil and condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  if status.message ~= nil and status.message ~= "" then
    return status.message
  end
  if condition ~= nil and condition.reason ~= nil and condition.reason ~= "" then
    return condition.reason
  end
  return fallback
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to start the backup"
  return hs
end

local succeeded = find_condition(status.conditions, "Succeeded")

if status.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = text_of(status, succeeded, "Backup failed")
  return hs
end

if status.phase == "Completed" then
  hs.status = "Healthy"
  hs.message = text_of(status, succeeded, "Backup completed")
  return hs
end

hs.status = "Progressing"
hs.message = text_of(status, succeeded, "Backup " .. status.phase)
return hs
