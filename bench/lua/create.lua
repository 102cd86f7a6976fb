-- POST /item with the three required fields (args: comma-separated categories).
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "report.lua")

local categories = {}
local headers = { ["Content-Type"] = "application/json" }
local n = 0

function init(args)
  for c in string.gmatch(args[1], "[^,]+") do categories[#categories + 1] = c end
  math.randomseed(os.time())
end

function request()
  n = n + 1
  local body = string.format('{"name":"bench-%d","category":"%s","price":%d.25}',
    n, categories[math.random(#categories)], n % 500)
  return wrk.format("POST", "/item", headers, body)
end
