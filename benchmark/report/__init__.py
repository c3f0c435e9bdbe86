"""Reporting: records -> leaderboards (statistics, the grid, tables, compare) and figures."""
