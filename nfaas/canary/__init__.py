"""Canary updates and rollback (EVE025 7.2.5, gap #5.1): version-mapping policies per
function, stored and honoured by the distributor, and the rule that rolls a bad
version back."""
