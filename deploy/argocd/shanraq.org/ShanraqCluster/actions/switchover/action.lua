-- Asks the operator for a planned switchover to the best replica (the annotation value
-- `any`); `kubectl shanraq switchover NAME --to INSTANCE` names a target instead.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["shanraq.org/switchover"] = "any"
return obj
