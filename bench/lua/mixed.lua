-- A mix chosen per request: 60 % GET /item/{id}, 20 % GET a filtered page, 20 % POST a create
-- (args: the ids file, comma-separated categories).
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "report.lua")

local ids, categories = {}, {}
local headers = { ["Content-Type"] = "application/json" }
local n = 0

function init(args)
  for line in io.lines(args[1]) do ids[#ids + 1] = line end
  for c in string.gmatch(args[2], "[^,]+") do categories[#categories + 1] = c end
  math.randomseed(os.time())
end

function request()
  local r = math.random()
  if r < 0.6 then
    return wrk.format("GET", "/item/" .. ids[math.random(#ids)])
  elseif r < 0.8 then
    return wrk.format("GET", "/item?category=" .. categories[math.random(#categories)] .. "&per_page=20")
  end
  n = n + 1
  local body = string.format('{"name":"mixed-%d","category":"%s","price":%d.25}',
    n, categories[math.random(#categories)], n % 500)
  return wrk.format("POST", "/item", headers, body)
end
