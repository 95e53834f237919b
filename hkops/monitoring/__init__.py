"""Live monitoring (使用情况监控): the monitor that reads the network's usage feed, its alert rules,
and the alerts it raises (acknowledged and closed by ops staff, every move audited)."""
