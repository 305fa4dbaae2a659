-- Asks the operator for a failover drill: it deletes the primary's Pod with no grace period,
-- lets the HA engine fail over, and records the measured RTO in status.drill and a
-- DrillCompleted Event. The annotation's value, the request id, is the current UTC time.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["shanraq.org/drill"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
