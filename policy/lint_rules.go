package policy

// rules is the lint rule table (filled in rule by rule; ids are stable).
var rules = []Rule{}
