-- wrk script: POST one allowed refund request to /v1/decide with the agent
-- token from the environment (REIN_TOKEN).
wrk.method = "POST"
wrk.body = '{"action":"refund","input":{"order_id":"ord_abc123","amount":40,"currency":"EUR"},"actor":{"id":"bot","role":"agent"},"snapshot":{"fraud_flag":false,"refunds_today":0,"account_age_days":400}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("REIN_TOKEN")

function response(status, headers, body)
  if status ~= 200 then
    io.stderr:write("unexpected status " .. status .. ": " .. body .. "\n")
  end
end
