-- wrk script: POST the JSON body stored in the file named by $WRK_BODY.
local file = assert(io.open(os.getenv("WRK_BODY"), "r"))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = file:read("*a")
file:close()
