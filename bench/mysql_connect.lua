-- sysbench script for bench/run's MySQL connect storm: every event is one
-- connection (the login), one `SELECT 1` on it, and the disconnect.
function thread_init()
  drv = sysbench.sql.driver()
end

function event()
  local con = drv:connect()
  con:query("SELECT 1")
  con:disconnect()
end
