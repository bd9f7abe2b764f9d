"""Static files served by retenshund: the dashboard, the browser SDK and the push service worker."""
