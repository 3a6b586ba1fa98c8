-- wrk script: each request asks for one of KEYS objects at random, /keys/<n>.bin
local keys = tonumber(os.getenv("KEYS") or "10000")
local prefix = os.getenv("PREFIX") or "/keys/"
math.randomseed(os.time())
request = function()
  return wrk.format("GET", prefix .. math.random(0, keys - 1) .. ".bin")
end
