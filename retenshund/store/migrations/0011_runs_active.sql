-- Runs a process left between two steps are looked up at every start
-- (AutomationEngine.recover). Without an index that read every run ever
-- started; only runs in the 'active' state are in this one, and a run is
-- there only between a step's commit and the next.
CREATE INDEX runs_active ON runs(started_at) WHERE status = 'active';
